//! Burn modules for training under multiplicative input masks.
//!
//! - [`kappa`]: the check every κ grid passes, and κ's label in names.
//! - [`mask`]: the Gaussian input mask c ~ N(1, κ²) and the other mask families.
//! - [`two_layer`]: the two-layer ReLU network of the paper, batched over replicas.
//! - [`deep`]: ReLU MLPs of any depth behind the same mask, batched over replicas.
//! - [`image`]: image classifiers (MLP, CNN) behind the input mask.
//! - [`rng`], [`tensor_io`] (from `gaussmask-core`): the seeded streams every random quantity
//!   comes from, and host ↔ tensor conversion.

pub mod deep;
pub mod image;
pub mod kappa;
pub mod mask;
pub mod two_layer;

/// Re-exported from `gaussmask-core`, so `gaussmask_nn::rng` and `gaussmask_nn::tensor_io` keep
/// working.
pub use gaussmask_core::{rng, tensor_io};

pub use deep::{DeepRelu, deep_init};
pub use kappa::{KAPPA_MAX, KappaGrid, check_kappa, check_kappa_grid, kappa_label};
pub use mask::{
    InputMask, MASK_BLOCK_ROWS, MaskCall, MaskConfig, MaskFamily, MaskNoise, MaskResample,
    MaskState, Replica,
};
pub use two_layer::{TwoLayerRelu, TwoLayerReluConfig, half_sse, output};
