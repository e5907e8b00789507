//! Integration tests against LocalStack through the local gateway (HTTP and HTTPS), the real
//! function binaries, and the Terraform configuration. One test binary, so the gateway and the
//! AWS SDK are set up once.

mod analytics;
mod archive;
mod auth;
mod azure_sdk;
mod bad_input;
mod commands;
mod damaged;
mod hubctl;
mod infra;
mod jobs;
mod lambda_binaries;
mod methods;
mod openapi;
mod permissions;
mod policies;
mod queries;
mod registry;
mod routing;
mod simulator;
mod telemetry;
mod twins;
