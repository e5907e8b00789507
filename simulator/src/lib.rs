//! Simulated devices for the hub, in the spirit of Azure IoT's preconfigured solutions: device
//! models are data files (`models/*.toml`), each device is a pure state machine given the time
//! (`device`), and a fleet plays many of them against a hub over its HTTPS API (`fleet`).
//!
//! Commands arrive as cloud-to-device messages whose body is `{"name": "...", "payload": {...}}`;
//! the device completes, rejects or abandons each as its model says.

pub mod device;
pub mod fleet;
pub mod model;

pub use device::SimulatedDevice;
pub use fleet::{FleetOptions, FleetSpec, Stats};
pub use model::Model;
