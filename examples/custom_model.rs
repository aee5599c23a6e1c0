//! Gaussian input masking in front of your own Burn model: a 3-layer MLP with a residual
//! connection, built from `burn::nn`, trained with gaussmask's generic loop on synthetic data.
//!
//! ```sh
//! cargo run --release -p gaussmask-examples --example custom_model -- --backend flex
//! ```
//!
//! Prints the clean test MSE of the model trained without and with the mask, and exits non-zero
//! unless both learned (test MSE below 0.5 of the labels' unit variance).

use std::process::ExitCode;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use gaussmask_data::{Dataset, SyntheticConfig};
use gaussmask_nn::{InputMask, MaskConfig};
use gaussmask_train::fit::{Batch, FitConfig, Optimizer, Trainable, batch, fit};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

// ── Your model: the mask goes in front, like any other layer. ────────────────────────────
#[derive(Module, Debug)]
struct ResidualMlp {
    mask: InputMask,
    input: Linear,
    hidden: Linear,
    output: Linear,
}

impl ResidualMlp {
    fn new(kappa: f64, d: usize, width: usize, device: &Device) -> Self {
        Self {
            mask: MaskConfig::default().init(kappa, 42),
            input: LinearConfig::new(d, width).init(device),
            hidden: LinearConfig::new(width, width).init(device),
            output: LinearConfig::new(width, 1).init(device),
        }
    }

    fn predict(&self, x: Tensor<2>) -> Tensor<1> {
        let h = relu(self.input.forward(x));
        let h = h.clone() + relu(self.hidden.forward(h));
        self.output.forward(h).squeeze_dim(1)
    }
}

// ── What the trainer needs: the loss on a batch, masked. ─────────────────────────────────
impl Trainable for ResidualMlp {
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = self.mask.forward_indexed(batch.x.clone(), &batch.rows);
        (self.predict(x) - batch.y.clone())
            .square()
            .mean()
            .reshape([1])
    }
}

/// Clean mean squared error of `model` (evaluation mode: the mask is the identity).
fn test_mse(model: &ResidualMlp, data: &Dataset, device: &Device) -> f64 {
    let b = batch(data, &(0..data.n).collect::<Vec<_>>(), device);
    let err = (model.valid().predict(b.x) - b.y).square().mean();
    err.into_scalar::<f64>()
}

fn main() -> ExitCode {
    let device = gaussmask_examples::device_or_exit();
    let (train, test) = SyntheticConfig::new(1200, 10).generate().split(1000);
    let config = FitConfig {
        steps: 600,
        batch_size: Some(100),
        lr: 0.003,
        optimizer: Optimizer::Adam,
        ..FitConfig::default()
    };
    let autodiff = device.clone().autodiff();
    let mut ok = true;
    println!("kappa  test MSE before  after");
    for kappa in [0.0, 0.5] {
        device.seed(1); // the same initial weights for every κ
        let model = ResidualMlp::new(kappa, 10, 64, &autodiff);
        let before = test_mse(&model, &test, &device);
        let model = match fit(model, &train, &config, &autodiff, |_, _| {}) {
            Ok(model) => model,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let after = test_mse(&model, &test, &device);
        println!("{kappa:<5}  {before:<15.4}  {after:.4}");
        ok &= after < 0.5;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: a model did not learn (test MSE ≥ 0.5)");
        ExitCode::FAILURE
    }
}
