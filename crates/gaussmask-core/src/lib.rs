//! The bottom crate of gaussmask, shared by the network, data, smoothing and NTK crates.
//!
//! - [`InputError`]: what the library crates return for input that cannot be used.
//! - [`memory`]: sizes from a config checked against this machine's memory.
//! - [`rng`]: the seeded streams every random quantity comes from.
//! - [`tensor_io`]: host ↔ tensor conversion in f64, whatever the device's float type.

mod error;
pub mod memory;
pub mod rng;
pub mod tensor_io;

pub use error::InputError;
