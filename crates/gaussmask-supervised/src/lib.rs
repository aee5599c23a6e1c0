//! Masked training on a user's own data: `gaussmask train` reads a CSV, `.npy` or IDX dataset
//! (or generates the synthetic one), trains one model per mask level κ (and seed) with the
//! generic trainer, and leaves a run directory with metrics, learning curves and the models;
//! `gaussmask predict` loads a model from it and predicts on new inputs; `gaussmask audit`
//! measures the membership privacy of the same training with LiRA over shadow models.
//!
//! The pieces are usable alone: [`config::JobConfig`] is the config, [`data`] reads, splits and
//! standardizes, [`network::Network`] is the trained module (the paper's two-layer net, or an
//! MLP / CNN of `burn::nn` layers behind the input mask), [`predict::Predictor`] loads a saved
//! model.

pub mod audit;
pub mod config;
pub mod data;
pub mod job;
pub mod network;
pub mod predict;
mod results;
pub mod saved;
mod train;

pub use audit::Audit;
pub use predict::{Prediction, Predictor};
pub use train::Train;
