//! Integration tests of the workspace (one test binary).
//!
//! In-process tests run on flex in f64 (set once for the whole binary); the command line is
//! tested as a subprocess, so each run there has its own backend and float type.

mod accountant;
mod audit_cli;
mod checkpoints_cli;
mod classify;
mod cli;
mod engines;
mod fit;
mod gradients;
mod images_cli;
mod layout;
mod masks;
mod ntk;
mod probes;
mod records_cli;
mod reliability_cli;
mod replicas;
mod shards_cli;
mod smooth;
mod train_cli;

use std::sync::OnceLock;

use burn::tensor::{Device, FloatDType};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

/// The flex device with f64 as its float type.
pub fn device64() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut d = Device::flex();
            d.configure(FloatDType::F64)
                .expect("flex is configured once, before any tensor");
            d
        })
        .clone()
}
