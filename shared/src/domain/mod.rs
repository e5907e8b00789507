//! Domain types: free of AWS and of I/O.

pub mod analytics;
pub mod command;
pub mod connection_string;
pub mod device;
pub mod device_id;
pub mod envelope;
pub mod job;
pub mod method;
pub mod policy;
pub mod registry;
pub mod sas;
pub mod tag_index;
pub mod timestamp;
pub mod twin;
