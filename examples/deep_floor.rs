//! A depth-4 ReLU network (three hidden layers, NTK parameterization) under Gaussian input
//! masking, trained with the generic loop, evaluated clean, and its floor printed: the masked
//! loss it settles at, which grows with κ.
//!
//! ```sh
//! cargo run --release -p gaussmask-examples --example deep_floor -- --backend flex
//! ```
//!
//! Exits non-zero unless every κ trains and the floor grows with κ.

use std::process::ExitCode;

use burn::module::Module;
use gaussmask_data::SyntheticConfig;
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{Replica, TwoLayerReluConfig, deep_init, half_sse};
use gaussmask_train::fit::{FitConfig, fit};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> ExitCode {
    let device = gaussmask_examples::device_or_exit();
    let (n, d, m, depth, steps) = (200, 10, 128, 4, 1500);
    let data = SyntheticConfig::new(n, d).generate();
    let kappas = [0.0, 0.3, 0.6];
    // One replica per κ, trained side by side in one batched model.
    let replicas = kappas.map(|kappa| Replica { kappa, seed: 5 });
    let autodiff = device.clone().autodiff();
    let model = deep_init(&TwoLayerReluConfig::new(d, m), depth, &replicas, &autodiff);
    let config = FitConfig {
        steps,
        lr: 0.002,
        log_every: 10,
        ..FitConfig::default()
    };
    let mut logs = Vec::new();
    let model = match fit(model, &data, &config, &autodiff, |log, _| {
        logs.push(log.clone())
    }) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The floor: the masked loss averaged over the last fifth of the run.
    let tail = &logs[logs.len() * 4 / 5..];
    let floor = |r: usize| tail.iter().map(|l| l.loss[r]).sum::<f64>() / tail.len() as f64;
    let (x, y) = data.all_tensors(&device);
    let clean = to_f64(half_sse(model.valid().forward_unmasked(x), y));
    println!("depth {depth}, width {m}, {steps} GD steps on ½Σ(f − y)² over {n} samples");
    println!("kappa  start     floor (masked)  clean at end");
    let mut ok = true;
    for (r, kappa) in kappas.iter().enumerate() {
        let start = logs[0].loss[r];
        println!(
            "{kappa:<5}  {start:<8.3}  {:<14.3}  {:.3}",
            floor(r),
            clean[r]
        );
        ok &= floor(r) < 0.5 * start;
        if r > 0 {
            ok &= floor(r) > floor(r - 1);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: a replica did not train, or the floor does not grow with κ");
        ExitCode::FAILURE
    }
}
