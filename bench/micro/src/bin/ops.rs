//! Per-op costs of the Burn autodiff path on flex: forward plus backward of each layer of
//! image-accuracy's CNN and MLP at batch 128, and of the depth workloads' batched matmuls,
//! timed one op at a time (median of repeats). `bench/peers/ops_torch.py` times the same ops
//! in PyTorch; `bench/run --workloads ops` prints them side by side.

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};

// mimalloc where the harness's `mimalloc` feature is on (see `gaussmask_harness::Allocator`).
#[global_allocator]
static ALLOCATOR: gaussmask_harness::Allocator = gaussmask_harness::ALLOCATOR;

/// Median seconds of `f` over `reps` calls, after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Reads one value back so the op has run (flex is eager; this keeps the timing honest on
/// lazy backends too).
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.sum().into_scalar::<f32>();
}

fn main() {
    let device = Device::flex().autodiff();
    let reps = 15;
    let b = 128;
    let mut out = serde_json::Map::new();
    let mut record = |name: &str, seconds: f64| {
        eprintln!("{name:40} {:9.3} ms", seconds * 1e3);
        out.insert(name.to_string(), seconds.into());
    };

    // Each image op through the burn::nn layer, then through gaussmask-cpu-ops (" cpu-ops").
    for (c, o, hw) in [(1, 16, 28), (16, 32, 14)] {
        let conv = Conv2dConfig::new([c, o], [5, 5])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .init(&device);
        let norm = BatchNormConfig::new(o).init(&device);
        let x = normal([b, c, hw, hw], &device).require_grad();
        let z = normal([b, o, hw, hw], &device).require_grad();
        for (path, fast) in [("", false), (" cpu-ops", true)] {
            let conv_fwd = |x: Tensor<4>| match fast {
                true => gaussmask_cpu_ops::conv2d_layer(&conv, x),
                false => conv.forward(x),
            };
            let norm_fwd = |z: Tensor<4>| match fast {
                true => gaussmask_cpu_ops::batch_norm_layer(&norm, z),
                false => norm.forward(z),
            };
            record(
                &format!("conv2d {c}->{o} 5x5 {hw}x{hw} fwd{path}"),
                time(reps, || sync(conv_fwd(x.clone()))),
            );
            record(
                &format!("conv2d {c}->{o} 5x5 {hw}x{hw} fwd+bwd{path}"),
                time(reps, || {
                    let g = conv_fwd(x.clone()).sum().backward();
                    sync(conv.weight.val().grad(&g).expect("weight gradient"));
                }),
            );
            record(
                &format!("batchnorm+relu+maxpool {o}x{hw}x{hw} fwd+bwd{path}"),
                time(reps, || {
                    let pool = MaxPool2dConfig::new([2, 2]).init();
                    let normed = norm_fwd(z.clone());
                    let pooled = match fast {
                        true => gaussmask_cpu_ops::relu_max_pool_layer(&pool, normed),
                        false => pool.forward(relu(normed)),
                    };
                    let g = pooled.sum().backward();
                    sync(z.grad(&g).expect("input gradient"));
                }),
            );
            record(
                &format!("batchnorm {o}x{hw}x{hw} fwd+bwd{path}"),
                time(reps, || {
                    let g = norm_fwd(z.clone()).sum().backward();
                    sync(z.grad(&g).expect("input gradient"));
                }),
            );
        }
        record(
            &format!("maxpool 2x2 {o}x{hw}x{hw} fwd+bwd"),
            time(reps, || {
                let pool = MaxPool2dConfig::new([2, 2]).init();
                let g = pool.forward(z.clone()).sum().backward();
                sync(z.grad(&g).expect("input gradient"));
            }),
        );
    }
    for (i, o) in [(784, 256), (1568, 128)] {
        let linear = LinearConfig::new(i, o).init(&device);
        let x = normal([b, i], &device).require_grad();
        record(
            &format!("linear {i}->{o} fwd+bwd"),
            time(reps, || {
                let g = relu(linear.forward(x.clone())).sum().backward();
                sync(linear.weight.val().grad(&g).expect("weight gradient"));
            }),
        );
    }
    for m in [100, 512] {
        let w = normal([18, m, m], &device).require_grad();
        let h = normal([18, 500, m], &device);
        record(
            &format!("batched matmul 18x[500x{m}]·[{m}x{m}] fwd+bwd"),
            time(reps, || {
                let g = relu(h.clone().matmul(w.clone().swap_dims(1, 2)))
                    .sum()
                    .backward();
                sync(w.grad(&g).expect("weight gradient"));
            }),
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("a JSON map")
    );
}
