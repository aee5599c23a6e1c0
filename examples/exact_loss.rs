//! The exact expected loss (A), E_c L(W) = ½ Σ_i (f̃_i − y_i)² + ½ Σ_i Var_c f(W, x_i ⊙ c), used
//! as an ordinary Burn loss in a hand-written training loop (autodiff + `burn::optim`), then
//! checked against a Monte-Carlo average of the masked loss at the trained weights.
//!
//! ```sh
//! cargo run --release -p gaussmask-examples --example exact_loss -- --backend flex
//! ```
//!
//! Exits non-zero unless (A) fell during training and the Monte-Carlo mean lies within 5
//! standard errors of it.

use std::process::ExitCode;

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Tensor;
use gaussmask_data::SyntheticConfig;
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{InputMask, Replica, TwoLayerReluConfig, half_sse};
use gaussmask_smooth::expected::ExactLoss;
use gaussmask_smooth::tensor::kappa_tensor;

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

fn main() -> ExitCode {
    let device = gaussmask_examples::device_or_exit();
    let (kappa, n, d, m, steps) = (0.5, 100, 10, 32, 200);
    let data = SyntheticConfig::new(n, d).generate();
    let autodiff = device.clone().autodiff();
    let (x, y) = data.all_tensors(&autodiff);
    let mut model = TwoLayerReluConfig::new(d, m).init(&[Replica { kappa, seed: 3 }], &autodiff);
    let mut optim = SgdConfig::new().init();
    let kappa_t = kappa_tensor(&[kappa], &autodiff);

    // The training loop: (A) is a differentiable tensor expression like any loss.
    let exact = |model: &gaussmask_nn::TwoLayerRelu| {
        let (w, a) = (model.w.val(), model.a.val());
        ExactLoss::new(w, a, x.clone(), y.clone(), kappa_t.clone(), 64).total()
    };
    let first = exact(&model).into_scalar::<f64>();
    for step in 0..steps {
        let loss = exact(&model);
        if step % 50 == 0 {
            println!(
                "step {step:>3}: E_c L = {:.4}",
                loss.clone().into_scalar::<f64>()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.02, model, grads);
    }
    let last = exact(&model).into_scalar::<f64>();
    println!("step {steps}: E_c L = {last:.4}  (from {first:.4})");

    // Monte Carlo at the trained weights: the masked loss averaged over fresh masks.
    let model = model.valid();
    let (x, y) = data.all_tensors(&device);
    let mask = model
        .mask
        .config
        .init_replicas(&[Replica { kappa, seed: 99 }]);
    let rows: Vec<usize> = (0..n).collect();
    let draws = 2000;
    let samples: Vec<f64> = (0..draws)
        .map(|_| {
            let xc: Tensor<3> = InputMask::apply(x.clone(), mask.sample(&rows, d), 1, &device);
            to_f64(half_sse(model.forward_unmasked(xc), y.clone()))[0]
        })
        .collect();
    let mean = samples.iter().sum::<f64>() / draws as f64;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
    let se = (var / draws as f64).sqrt();
    let z = (mean - last) / se;
    println!("Monte Carlo over {draws} masks: {mean:.4} ± {se:.4} (z = {z:+.2})");
    if last < first && z.abs() < 5.0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: (A) did not fall, or Monte Carlo disagrees with it by {z:.1} SE");
        ExitCode::FAILURE
    }
}
