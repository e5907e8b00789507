//! The end-to-end suite: the hub driven only from outside, as devices, back ends and integrations
//! use it (its HTTP API, the telemetry stream, its queues), so it runs unchanged against
//!   - the local gateway on LocalStack (`make test`'s first stage; the default), and
//!   - the complete `infra/` applied to MiniStack (the full-stack stage: `HUB_ENV_FILE=
//!     .local/ministack/hub.env`), where API Gateway, the REQUEST authorizer, the real function
//!     binaries, the Kinesis and SQS event source mappings and the EventBridge schedule run as
//!     deployed, and every AWS call a function makes is checked against its IAM role.
//!
//! Endpoints and names come from the environment file either way.

mod analytics;
mod archive;
mod commands;
mod dashboard;
mod errors;
mod fleet;
mod registry;
mod telemetry;
mod twins;
