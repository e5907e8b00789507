//! The library the hub's functions share: domain types, ports, AWS adapters, configuration and
//! the HTTP error mapping.
//!
//! Without the `aws` feature only the AWS-free parts build (domain types, SAS tokens, connection
//! strings, routes and errors), which is what the device SDK uses.

pub mod authz;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod ports;
pub mod query;
pub mod routes;
pub mod routing;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod connection;
#[cfg(feature = "fakes")]
pub mod fakes;
#[cfg(feature = "aws")]
pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "aws")]
pub mod publish;

pub use domain::device_id::DeviceId;
pub use error::{ApiError, ErrorCode};
