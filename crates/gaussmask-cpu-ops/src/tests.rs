//! The ops against Burn's own conv2d and batch_norm_train on flex in f64: values and every
//! gradient, at shapes that cover padding 0, 0 < p < k/2, p = k/2 and p ≥ k, several channels, and a batch
//! that is not a multiple of the backward's chunk.

use std::sync::OnceLock;

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, FloatDType, Tensor};

use super::*;

fn device64() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut d = Device::flex();
            d.configure(FloatDType::F64)
                .expect("flex is configured once, before any tensor");
            d
        })
        .clone()
        .autodiff()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Largest |a − b| / (1 + |b|) over the entries.
fn worst(a: Vec<f64>, b: Vec<f64>) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

#[test]
fn conv2d_and_its_gradients_equal_burns() {
    let device = device64();
    // (batch, channels in, out, side, kernel, padding)
    for (b, c, o, side, k, p) in [
        (11, 3, 4, 7, 3, 1),
        (9, 2, 5, 6, 5, 2),
        (3, 4, 2, 8, 5, 1),
        (2, 1, 3, 5, 3, 0),
        (2, 2, 5, 4, 3, 3),
    ] {
        let (x, w, bias) = (
            random([b, c, side, side], &device),
            random([o, c, k, k], &device),
            random([o], &device),
        );
        let out = side + 2 * p + 1 - k;
        // A fixed random ∂L/∂y, so the backward sees more than ones.
        let dy = random([b, o, out, out], &device).detach();
        let ours = conv2d(x.clone(), w.clone(), bias.clone(), p);
        let opts = ConvOptions::new([1, 1], [p, p], [1, 1], 1);
        let theirs = burn_conv2d(x.clone(), w.clone(), Some(bias.clone()), opts);
        assert_eq!(ours.dims(), theirs.dims());
        let g1 = (ours.clone() * dy.clone()).sum().backward();
        let g2 = (theirs.clone() * dy).sum().backward();
        let shape = format!("b={b} c={c} o={o} side={side} k={k} p={p}");
        assert!(worst(values(ours), values(theirs)) < 1e-12, "y at {shape}");
        for (name, a, t) in [
            ("x", x.grad(&g1).unwrap(), x.grad(&g2).unwrap()),
            ("w", w.grad(&g1).unwrap(), w.grad(&g2).unwrap()),
        ] {
            assert!(worst(values(a), values(t)) < 1e-12, "∂{name} at {shape}");
        }
        let (a, t) = (bias.grad(&g1).unwrap(), bias.grad(&g2).unwrap());
        assert!(worst(values(a), values(t)) < 1e-12, "∂bias at {shape}");
    }
}

#[test]
fn an_untracked_input_gets_no_gradient_and_the_weights_theirs() {
    // A first layer: the input needs no gradient, so the backward skips it.
    let device = device64();
    let x = Tensor::<4>::random([9, 2, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let (w, bias) = (random([3, 2, 3, 3], &device), random([3], &device));
    let (w2, bias2) = (
        w.clone().detach().require_grad(),
        bias.clone().detach().require_grad(),
    );
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let g1 = conv2d(x.clone(), w.clone(), bias.clone(), 1)
        .powi_scalar(2)
        .sum()
        .backward();
    let g2 = burn_conv2d(x.clone(), w2.clone(), Some(bias2.clone()), opts)
        .powi_scalar(2)
        .sum()
        .backward();
    assert!(x.grad(&g1).is_none());
    let (a, b) = (w.grad(&g1).unwrap(), w2.grad(&g2).unwrap());
    assert!(worst(values(a), values(b)) < 1e-12, "∂w");
    let (a, b) = (bias.grad(&g1).unwrap(), bias2.grad(&g2).unwrap());
    assert!(worst(values(a), values(b)) < 1e-12, "∂bias");
}

#[test]
fn per_sample_weights_are_each_samples_own_and_untracked_parameters_get_none() {
    let device = device64();
    // (batch, channels in, out, side, kernel, padding)
    for (b, c, o, side, k, p) in [(11, 3, 4, 7, 3, 1), (3, 2, 5, 6, 5, 2), (2, 1, 3, 5, 3, 0)] {
        let conv = burn::nn::conv::Conv2dConfig::new([c, o], [k, k])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init(&device);
        let x = random([b, c, side, side], &device);
        let out = side + 2 * p + 1 - k;
        let dy = random([b, o, out, out], &device).detach();
        let shape = format!("b={b} c={c} o={o} side={side} k={k} p={p}");
        // Untracked parameters: the output is tracked through x alone (not at all without
        // it), x gets Burn's gradient, the parameters none.
        let untracked_x = x.clone().set_require_grad(false);
        assert!(
            !conv2d_layer_untracked(&conv, untracked_x).is_require_grad(),
            "{shape}"
        );
        let y = conv2d_layer_untracked(&conv, x.clone());
        let grads = (y * dy.clone()).sum().backward();
        assert!(conv.weight.val().grad(&grads).is_none(), "{shape}");
        let theirs = conv.forward(x.clone());
        let their_grads = (theirs * dy.clone()).sum().backward();
        let (a, t) = (x.grad(&grads).unwrap(), x.grad(&their_grads).unwrap());
        assert!(worst(values(a), values(t)) < 1e-12, "∂x at {shape}");
        // Sample i's slot is the weight gradient of sample i alone.
        let per = per_sample_weight_layer(&conv, x.clone().detach(), dy.clone())
            .unwrap_or_else(|| panic!("covered at {shape}"));
        assert_eq!(per.dims(), [b, o, c * k * k]);
        for i in 0..b {
            let xi = x.clone().detach().narrow(0, i, 1);
            let dyi = dy.clone().narrow(0, i, 1);
            let g = (conv.forward(xi) * dyi).sum().backward();
            let want = conv.weight.val().grad(&g).unwrap();
            let got = per.clone().narrow(0, i, 1);
            assert!(
                worst(values(got), values(want)) < 1e-12,
                "sample {i} at {shape}"
            );
        }
    }
}

#[test]
fn batch_norm_and_its_gradients_equal_burns() {
    let device = device64();
    let (x, gamma, beta) = (
        random([5, 3, 4, 6], &device)
            .mul_scalar(2.0)
            .add_scalar(3.0)
            .detach()
            .require_grad(),
        random([3], &device),
        random([3], &device),
    );
    let dy = random([5, 3, 4, 6], &device).detach();
    // Separate leaves for the two graphs (each backward consumes its tape).
    let leaf = |t: &Tensor<1>| t.clone().detach().require_grad();
    let (x2, gamma2, beta2) = (x.clone().detach().require_grad(), leaf(&gamma), leaf(&beta));
    let (y, mean, var) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    let burn =
        burn::tensor::module::batch_norm_train(x2.clone(), gamma2.clone(), beta2.clone(), 1e-5);
    let g1 = (y.clone() * dy.clone()).sum().backward();
    let g2 = (burn.output.clone() * dy).sum().backward();
    assert!(worst(values(y), values(burn.output)) < 1e-12, "y");
    assert!(worst(values(mean), values(burn.mean)) < 1e-12, "mean");
    assert!(
        worst(values(var), values(burn.variance)) < 1e-12,
        "variance"
    );
    let (a, b) = (x.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
    assert!(worst(values(a), values(b)) < 1e-12, "∂x");
    for (name, t, t2) in [("gamma", &gamma, &gamma2), ("beta", &beta, &beta2)] {
        let (a, b) = (values(t.grad(&g1).unwrap()), values(t2.grad(&g2).unwrap()));
        assert!(worst(a, b) < 1e-12, "∂{name}");
    }
}

#[test]
fn layers_outside_the_kernels_fall_back_to_their_own_forward() {
    use burn::nn::conv::Conv2dConfig;
    let device = device64();
    let x = random([2, 2, 7, 7], &device);
    // Stride 2 is not covered: the layer's forward runs, and gives its shape.
    let strided = Conv2dConfig::new([2, 3], [3, 3])
        .with_stride([2, 2])
        .init(&device);
    assert_eq!(conv2d_layer(&strided, x.clone()).dims(), [2, 3, 3, 3]);
    // Same padding with an odd kernel is; it agrees with the layer.
    let same = Conv2dConfig::new([2, 3], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    let (a, b) = (conv2d_layer(&same, x.clone()), same.forward(x.clone()));
    assert!(worst(values(a), values(b)) < 1e-12);
    assert!(supports(&device) && supports(&Device::flex()));
}

#[test]
fn the_batch_norm_layer_updates_running_statistics_as_burns_does() {
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    let device = device64();
    let (ours, theirs) = (
        BatchNormConfig::new(3).init(&device),
        BatchNormConfig::new(3).init(&device),
    );
    for _ in 0..3 {
        let x = random([4, 3, 5, 5], &device).add_scalar(1.5);
        let (a, b) = (batch_norm_layer(&ours, x.clone()), theirs.forward(x));
        assert!(worst(values(a), values(b)) < 1e-12);
    }
    let (ours, theirs) = (ours.valid(), theirs.valid());
    for (a, b) in [
        (ours.running_mean.value(), theirs.running_mean.value()),
        (ours.running_var.value(), theirs.running_var.value()),
    ] {
        assert!(worst(values(a), values(b)) < 1e-12);
    }
}

#[test]
fn relu_and_max_pool_and_its_gradient_equal_burns() {
    use burn::nn::pool::MaxPool2dConfig;
    let device = device64();
    let pool = MaxPool2dConfig::new([2, 2]).init();
    // Odd sides: the trailing row and column are dropped, as Burn's pool does.
    for side in [6, 7] {
        let x = random([3, 2, side, side], &device);
        let x2 = x.clone().detach().require_grad();
        let half = side / 2;
        let dy = random([3, 2, half, half], &device).detach();
        let ours = relu_max_pool_layer(&pool, x.clone());
        let theirs = pool.forward(burn::tensor::activation::relu(x2.clone()));
        let g1 = (ours.clone() * dy.clone()).sum().backward();
        let g2 = (theirs.clone() * dy).sum().backward();
        assert!(
            worst(values(ours), values(theirs)) < 1e-15,
            "y at side {side}"
        );
        let (a, b) = (x.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
        assert!(worst(values(a), values(b)) < 1e-15, "∂x at side {side}");
    }
}

#[test]
fn relu_matmul_and_its_gradients_are_burns_bit_for_bit() {
    let device = device64();
    let bits = |t: Tensor<3>| -> Vec<u64> { values(t).iter().map(|v| v.to_bits()).collect() };
    // How h and w reach the op: contiguous, or as the views the models pass (w transposed,
    // h one matrix expanded over the stack) and one with negative strides (copied first).
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        Contiguous,
        TransposedW,
        ExpandedH,
        FlippedH,
    }
    // (replicas, n, k, m, scale, h's gradient wanted, layout)
    for (r, n, k, m, scale, h_grad, layout) in [
        (3, 7, 5, 6, 0.6, true, Layout::Contiguous),
        (2, 9, 4, 3, 1.0, true, Layout::Contiguous),
        (4, 5, 8, 8, 0.25, false, Layout::Contiguous),
        (3, 6, 4, 5, 1.0, true, Layout::TransposedW),
        (3, 6, 4, 5, 0.7, true, Layout::ExpandedH),
        (2, 5, 3, 4, 0.9, true, Layout::FlippedH),
        // Large enough that flex's matmul lets gemm split one product across threads.
        (1, 200, 200, 200, 0.5, true, Layout::Contiguous),
    ] {
        let h_leaf = match layout {
            Layout::ExpandedH => random([1, n, k], &device),
            _ => random([r, n, k], &device),
        };
        let h_leaf = if h_grad {
            h_leaf
        } else {
            h_leaf.set_require_grad(false)
        };
        let w_leaf = match layout {
            Layout::TransposedW => random([r, m, k], &device),
            _ => random([r, k, m], &device),
        };
        // Each graph its own view nodes: a backward pass consumes the nodes it runs through.
        let views = || match layout {
            Layout::Contiguous => (h_leaf.clone(), w_leaf.clone()),
            Layout::TransposedW => (h_leaf.clone(), w_leaf.clone().swap_dims(1, 2)),
            Layout::ExpandedH => (h_leaf.clone().expand([r, n, k]), w_leaf.clone()),
            Layout::FlippedH => (h_leaf.clone().flip([1]), w_leaf.clone()),
        };
        let dy = random([r, n, m], &device).detach();
        let (h, w) = views();
        let ours = relu_matmul(h, w, scale);
        let (h, w) = views();
        let product = h.matmul(w);
        let theirs = burn::tensor::activation::relu(if scale == 1.0 {
            product
        } else {
            product * scale
        });
        let g1 = (ours.clone() * dy.clone()).sum().backward();
        let g2 = (theirs.clone() * dy).sum().backward();
        let case = format!("r={r} n={n} k={k} m={m} scale={scale} {layout:?}");
        assert_eq!(bits(ours), bits(theirs), "y at {case}");
        assert_eq!(
            bits(w_leaf.grad(&g1).unwrap()),
            bits(w_leaf.grad(&g2).unwrap()),
            "∂w at {case}"
        );
        match h_grad {
            true => assert_eq!(
                bits(h_leaf.grad(&g1).unwrap()),
                bits(h_leaf.grad(&g2).unwrap()),
                "∂h at {case}"
            ),
            false => assert!(h_leaf.grad(&g1).is_none(), "∂h formed for an untracked h"),
        }
    }
}

#[test]
fn relu_matmul_lets_nan_through_as_burns_relu_does() {
    let device = device64();
    let h = Tensor::<3>::from_data([[[f64::NAN, 1.0], [-3.0, 1.0]]], &device);
    let w = Tensor::<3>::from_data([[[1.0, -1.0], [1.0, 1.0]]], &device);
    let y = values(relu_matmul(h, w, 0.5));
    assert!(y[0].is_nan() && y[1].is_nan(), "NaN rows stay NaN: {y:?}");
    assert_eq!(&y[2..], &[0.0, 2.0]);
}
