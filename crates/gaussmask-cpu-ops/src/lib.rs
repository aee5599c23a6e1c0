//! Fast CPU paths for the image CNN's layers and the deep MLPs' layers, as a Burn backend
//! extension on flex (and autodiff over flex).
//!
//! Burn's flex runs a 2-D convolution as a 3-D one and its input gradient through a transposed
//! 3-D convolution, its batch norm as a chain of element-wise passes, and its max-pool backward
//! as a scatter; at the image CNN's shapes that made an epoch 2.4× PyTorch's. Here a stride-1
//! convolution is a direct correlation on the padded planes, register-tiled across the output
//! channels and compiled for the CPU's vector units (its input gradient the correlation of ∂y
//! with the flipped kernel, its weight gradient one more; samples in parallel),
//! batch norm is two passes forward and two backward, and relu + 2×2 max-pool is one pass each
//! way; each op is one autodiff node with a hand-written backward. A deep MLP's layer
//! relu(scale · h·W) ([`relu_matmul`]) makes the gemm calls Burn's flex matmul makes, each
//! replica's product straight into the output (flex zero-fills a fresh tensor and copies it
//! to realign it) with its scale and relu while in cache; backward, each replica's ∂y through
//! the relu and scale, then its two products (Burn's chain records three nodes and makes two
//! element-wise passes each way).
//!
//! For DP-SGD's one-pass clipped sum, [`conv2d_layer_untracked`] runs a conv whose backward
//! forms no parameter gradient and [`per_sample_weight_layer`] forms each sample's weight
//! gradient instead.
//!
//! [`conv2d_layer`], [`batch_norm_layer`] and [`relu_max_pool_layer`] take `burn::nn` layers,
//! so a model keeps its modules and records: on a flex device, for the shapes these kernels
//! cover, they run here; everywhere else they call the layers' own `forward`. Both paths are
//! tested equal (f64, 50 training steps) in the workspace's integration tests.
//!
//! ```
//! use burn::nn::conv::Conv2dConfig;
//! use burn::nn::PaddingConfig2d;
//! use burn::tensor::{Device, Distribution, Tensor};
//!
//! let device = Device::flex().autodiff();
//! let conv = Conv2dConfig::new([1, 4], [5, 5])
//!     .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
//!     .init(&device);
//! let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
//! let fast = gaussmask_cpu_ops::conv2d_layer(&conv, x.clone());
//! let plain = conv.forward(x);
//! fast.into_data().assert_approx_eq::<f32>(&plain.into_data(), Default::default());
//! ```

/// Defines `$name`, which runs `$generic` compiled a second time for the CPU's vector units:
/// for AVX-512 where the CPU has it, else for AVX2 + FMA where it has those (the default x86-64
/// target has SSE2 only); elsewhere `$name` is `$generic`. `$generic` is `#[inline(always)]`
/// and generic over `T: Real`.
#[macro_export]
macro_rules! multiversion {
    ($name:ident, $generic:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[allow(unsafe_code)]
        fn $name<T: Real>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512<T: Real>($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2<T: Real>($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

mod extension;
mod kernels;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Device, Tensor};

pub use extension::CpuOps;
pub use kernels::{Real, gemm};

/// Whether the ops run on `device`: flex, with or without autodiff.
pub fn supports(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

fn runs_here<const D: usize>(x: &Tensor<D>) -> bool {
    supports(&x.device()) && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Stride-1 convolution with `padding` zeros on every side, plus a bias per output channel
/// (flex devices only; see [`supports`]).
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `weight`: `[o, c, k, k]`, `bias`: `[o]`; returns
///   `[b, o, h + 2·padding − k + 1, w + 2·padding − k + 1]`
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, padding: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::cpu_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        padding,
    ))
}

/// Training-mode batch norm over every dimension but the channels (dim 1): (output, batch
/// mean, biased batch variance), like `burn::tensor::module::batch_norm_train` (flex devices
/// only; see [`supports`]).
///
/// # Shapes
/// - `x`: `[b, channels, ...]`, `gamma`, `beta`: `[channels]`
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let out = <Dispatch as CpuOps>::cpu_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(out.first),
        Tensor::from_dispatch(out.second),
        Tensor::from_dispatch(out.third),
    )
}

/// relu, then a 2×2 max-pool with stride 2, in one pass (flex devices only; see [`supports`]).
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; returns `[b, c, h/2, w/2]`
pub fn relu_max_pool2(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuOps>::cpu_relu_max_pool2(x.into_dispatch()))
}

/// `pool.forward(relu(x))`, through [`relu_max_pool2`] when it covers the layer (a flex
/// device, a 2×2 window with stride 2, no padding, dilation or ceil mode).
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; returns `[b, c, h', w']` as `pool.forward` does
pub fn relu_max_pool_layer(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let covered = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    match covered && runs_here(&x) {
        true => relu_max_pool2(x),
        false => pool.forward(burn::tensor::activation::relu(x)),
    }
}

/// relu(scale · h·w), the matmul per leading index, as one autodiff node on flex: the gemm
/// calls of Burn's flex matmul with the scale and relu fused in, and backward ∂y through the
/// relu and scale, then Burn's two matmul-backward products. The same values as
/// `relu(h.matmul(w) * scale)`, bit for bit (tested, with contiguous, transposed, expanded
/// and flipped operands), which it runs off flex or where the leading dimensions differ
/// (broadcasting; `relu(h.matmul(w))` at scale 1).
///
/// # Shapes
/// - `h`: `[r, n, k]`, `w`: `[r, k, m]`; returns `[r, n, m]`
pub fn relu_matmul(h: Tensor<3>, w: Tensor<3>, scale: f64) -> Tensor<3> {
    if runs_here(&h) && h.dims()[0] == w.dims()[0] {
        return Tensor::from_dispatch(<Dispatch as CpuOps>::cpu_relu_matmul(
            h.into_dispatch(),
            w.into_dispatch(),
            scale,
        ));
    }
    let product = h.matmul(w);
    burn::tensor::activation::relu(if scale == 1.0 {
        product
    } else {
        product * scale
    })
}

/// The padding `conv` applies on every side, if it is the same on all four.
fn symmetric_padding(conv: &Conv2d) -> Option<usize> {
    let [kh, kw] = conv.kernel_size;
    match conv.padding {
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Same if kh == kw && kh % 2 == 1 => Some(kh / 2),
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Some(t),
        _ => None,
    }
}

/// `conv.forward(x)`, through [`conv2d`] when it covers the layer (a flex device, stride 1, no
/// dilation or groups, a square kernel, a bias, the same padding on every side).
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; returns `[b, o, h', w']` as `conv.forward` does
pub fn conv2d_layer(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match (&conv.bias, covered_padding(conv, &x)) {
        (Some(bias), Some(padding)) => conv2d(x, conv.weight.val(), bias.val(), padding),
        _ => conv.forward(x),
    }
}

/// [`conv2d_layer`] with the weight and bias entering untracked where [`conv2d`] covers the
/// layer: the output is tracked through `x` alone, and the backward pass forms no parameter
/// gradient (DP-SGD's probed pass forms them per sample, [`per_sample_weight_layer`]).
/// Elsewhere it is `conv.forward(x)`.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; returns `[b, o, h', w']` as `conv.forward` does
pub fn conv2d_layer_untracked(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match (&conv.bias, covered_padding(conv, &x)) {
        // Untracked: `detach` alone would leave them leaves that still require a gradient.
        (Some(bias), Some(padding)) => {
            let weight = conv.weight.val().set_require_grad(false);
            conv2d(x, weight, bias.val().set_require_grad(false), padding)
        }
        _ => conv.forward(x),
    }
}

/// Each sample's weight gradient of `conv`, given the layer's input `x` and the gradient at
/// its output: the terms the weight gradient sums, unsummed. `None` where [`conv2d_layer`]
/// would not run here.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `output_grad`: `[b, o, h', w']`; returns `[b, o, c·k·k]` (the
///   weight's order)
pub fn per_sample_weight_layer(
    conv: &Conv2d,
    x: Tensor<4>,
    output_grad: Tensor<4>,
) -> Option<Tensor<3>> {
    let padding = covered_padding(conv, &x).filter(|_| conv.bias.is_some())?;
    Some(Tensor::from_dispatch(
        <Dispatch as CpuOps>::cpu_conv2d_per_sample_weight(
            x.into_dispatch(),
            output_grad.into_dispatch(),
            conv.kernel_size[0],
            padding,
        ),
    ))
}

/// The padding on every side with which [`conv2d`] runs `conv` on `x`, where it covers the
/// layer: a flex device, stride 1, no dilation or groups, a square kernel, the same padding
/// on every side.
fn covered_padding(conv: &Conv2d, x: &Tensor<4>) -> Option<usize> {
    let [kh, kw] = conv.kernel_size;
    let plain_layout = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    symmetric_padding(conv).filter(|_| plain_layout && kh == kw && runs_here(x))
}

/// `norm.forward(x)`, through [`batch_norm_train`] when training on a flex device: batch
/// statistics, and the running ones updated with the layer's momentum exactly as
/// `burn::nn::BatchNorm` does. In evaluation (no autodiff, or the layer frozen) it is the
/// layer's own forward.
///
/// # Shapes
/// - `x`: `[b, channels, ...]`; returns the same shape
pub fn batch_norm_layer<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !(device.is_autodiff() && norm.training.is_enabled() && runs_here(&x)) {
        return norm.forward(x);
    }
    let (y, mean, var) = batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    let m = norm.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch.detach().mul_scalar(m))
            .detach()
    };
    norm.running_mean
        .update(blend(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(blend(norm.running_var.value_sync(), var));
    y
}

#[cfg(test)]
mod tests;
