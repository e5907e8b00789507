//! The local gateway: serves the hub's HTTP API on this machine as API Gateway and Lambda serve it
//! in AWS, running the same handler code against LocalStack.

pub mod api_gateway;
pub mod aws_calls;
pub mod bench;
pub mod demo;
pub mod event_sources;
pub mod gateway;
pub mod hub;
pub mod kinesis_mapping;
pub mod metrics;
pub mod settings;
pub mod stream;
pub mod tls;

pub use gateway::{GatewayOptions, RunningGateway, start};
pub use hub::{FunctionName, Hub};
pub use settings::LocalSettings;
