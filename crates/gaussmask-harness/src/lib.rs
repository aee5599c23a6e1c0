//! The experiment harness: configs, the `gaussmask` command line, run records, recorded
//! results and the README tables made from them, figures, progress bars and run-time backend
//! selection.

pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod options;
pub mod output;
pub mod plot;
pub mod provenance;
pub mod records;
pub mod records_command;
pub mod resumable;
pub mod run;
pub mod selection;
pub mod shards;
pub mod slurm;
pub mod stats;
pub mod study;

pub use backend::{Backend, Dtype, make_device};
pub use error::HarnessError;
pub use gaussmask_core::InputError;
pub use resumable::{Resumable, Training};
pub use run::{Experiment, RunContext};
pub use study::{Study, Timed, Unit};

/// The allocator the workspace's binaries declare as their global allocator: mimalloc with
/// the `mimalloc` feature, the system's without. Burn's autodiff frees and reallocates multi-MB
/// tensors every step; glibc's malloc hands them back to the kernel and page-faults them in
/// again, mimalloc keeps them. A library never sets the allocator: a binary opts in with
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;
/// ```
#[cfg(feature = "mimalloc")]
pub type Allocator = mimalloc::MiMalloc;
/// See [`Allocator`].
#[cfg(feature = "mimalloc")]
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;
/// The allocator the workspace's binaries declare (the system's: the `mimalloc` feature is off).
#[cfg(not(feature = "mimalloc"))]
pub type Allocator = std::alloc::System;
/// See [`Allocator`].
#[cfg(not(feature = "mimalloc"))]
pub const ALLOCATOR: Allocator = std::alloc::System;

/// Mean and (sample) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}
