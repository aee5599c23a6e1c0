//! The bottom crate of gaussmask, shared by the network, data, smoothing and NTK crates.
//!
//! - [`rng`]: the seeded streams every random quantity comes from.
//! - [`tensor_io`]: host ↔ tensor conversion in f64, whatever the device's float type.

pub mod rng;
pub mod tensor_io;
