//! The Burn backend extension: the ops on flex, and on autodiff over flex with a hand-written
//! backward (one graph node per op instead of the chain Burn's defaults record).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, ExtensionType, Flex, backend_extension};
use burn::tensor::{DType, Shape, TensorData};

use crate::kernels::{self, ConvGeometry, Real, Wanted};

/// Three float tensors: (∂x, ∂weight, ∂bias), (y, mean, variance) or (∂x, ∂γ, ∂β).
#[derive(ExtensionType)]
pub struct Three<B: Backend> {
    /// ∂x, or y.
    pub first: FloatTensor<B>,
    /// ∂weight, the mean, or ∂γ.
    pub second: FloatTensor<B>,
    /// ∂bias, the variance, or ∂β.
    pub third: FloatTensor<B>,
}

impl<B: Backend> Three<B> {
    fn new((first, second, third): (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>)) -> Self {
        Self {
            first,
            second,
            third,
        }
    }
    fn into_parts(self) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        (self.first, self.second, self.third)
    }
}

/// Two float tensors: (∂h, ∂w).
#[derive(ExtensionType)]
pub struct Two<B: Backend> {
    /// ∂h.
    pub first: FloatTensor<B>,
    /// ∂w.
    pub second: FloatTensor<B>,
}

fn shape_of(t: &FlexTensor) -> Shape {
    t.layout().shape().clone()
}

/// A batch-norm input's shape `[b, channels, ...]`, its channels, and the positions per sample
/// and channel.
fn per_channel(x: &FlexTensor) -> (Shape, usize, usize) {
    let shape = shape_of(x);
    let channels = shape[1];
    let s = shape.num_elements() / (shape[0] * channels).max(1);
    (shape, channels, s)
}

/// The CPU ops. Defined for flex and for autodiff over flex; the tensor-level functions in the
/// crate root call them only there.
#[backend_extension(Flex, Autodiff)]
pub trait CpuOps: Backend {
    /// Stride-1 convolution with `padding` zeros on every side, plus a bias per output channel.
    ///
    /// # Shapes
    /// - `x`: `[b, c, h, w]`, `weight`: `[o, c, k, k]`, `bias`: `[o]`; returns
    ///   `[b, o, h + 2p − k + 1, w + 2p − k + 1]`
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
    ) -> FloatTensor<Self>;

    /// Gradients of [`CpuOps::cpu_conv2d`]: (∂x, ∂weight, ∂bias) given ∂y; ∂x is zeros unless
    /// `input_grad`, ∂weight and ∂bias unless `param_grad`.
    fn cpu_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        padding: usize,
        input_grad: bool,
        param_grad: bool,
    ) -> Three<Self>;

    /// Each sample's weight gradient of [`CpuOps::cpu_conv2d`] given ∂y, not summed.
    ///
    /// # Shapes
    /// - `x`: `[b, c, h, w]`, `output_grad`: `[b, o, h', w']`; returns `[b, o, c·k·k]`
    fn cpu_conv2d_per_sample_weight(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kernel: usize,
        padding: usize,
    ) -> FloatTensor<Self>;

    /// Training-mode batch norm over every dimension but the channels (dim 1): (y, batch mean,
    /// biased batch variance).
    ///
    /// # Shapes
    /// - `x`: `[b, channels, ...]`, `gamma`, `beta`: `[channels]`
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> Three<Self>;

    /// relu, then a 2×2 max-pool with stride 2.
    ///
    /// # Shapes
    /// - `x`: `[b, c, h, w]`; returns `[b, c, h/2, w/2]`
    fn cpu_relu_max_pool2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Gradient of [`CpuOps::cpu_relu_max_pool2`] given ∂y.
    fn cpu_relu_max_pool2_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// relu(scale · h·w), the matmul per leading index: gemm as Burn's matmul calls it, the
    /// scale and relu while each product is in cache.
    ///
    /// # Shapes
    /// - `h`: `[r, n, k]`, `w`: `[r, k, m]`; returns `[r, n, m]`
    fn cpu_relu_matmul(h: FloatTensor<Self>, w: FloatTensor<Self>, scale: f64)
    -> FloatTensor<Self>;

    /// Gradients of [`CpuOps::cpu_relu_matmul`] given its output and ∂y: (∂h, ∂w), each
    /// empty where not wanted.
    fn cpu_relu_matmul_backward(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        scale: f64,
        wanted: [bool; 2],
    ) -> Two<Self>;

    /// Gradients of [`CpuOps::cpu_batch_norm_train`]: (∂x, ∂γ, ∂β) given ∂y and its statistics.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> Three<Self>;
}

/// A contiguous view of `t`'s values (a copy only when `t` is a strided view).
fn values<E: Real + burn::tensor::Element + bytemuck::Pod>(
    t: &FlexTensor,
) -> std::borrow::Cow<'_, [E]> {
    match t.as_slice::<E>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<E>().unwrap().to_vec()),
    }
}

/// `[r, n, k, m]` of a stack of r n×k matrices times one of r k×m matrices.
fn matmul_dims(h: &FlexTensor, w: &FlexTensor) -> [usize; 4] {
    let (hs, ws) = (shape_of(h), shape_of(w));
    assert!(
        hs.num_dims() == 3 && ws.num_dims() == 3 && hs[0] == ws[0] && hs[2] == ws[1],
        "relu matmul: h {hs:?} and w {ws:?} are not [r, n, k] and [r, k, m]"
    );
    [hs[0], hs[1], hs[2], ws[2]]
}

/// `t` itself where its strides are non-negative (views such as a transpose or an expanded
/// stack cost no copy), else a contiguous copy: the layouts [`stacked`] reads.
fn nonnegative(t: &FlexTensor) -> std::borrow::Cow<'_, FlexTensor> {
    match t.layout().strides().iter().all(|&s| s >= 0) {
        true => std::borrow::Cow::Borrowed(t),
        false => std::borrow::Cow::Owned(t.to_contiguous()),
    }
}

/// A 3-D tensor with non-negative strides ([`nonnegative`]) as the kernels read its matrices:
/// its own buffer, offset and strides.
fn stacked<E: Real + burn::tensor::Element + bytemuck::Pod>(
    t: &FlexTensor,
) -> kernels::Stacked<'_, E> {
    let [batch, rows, cols] = [0, 1, 2].map(|d| {
        usize::try_from(t.layout().strides()[d]).expect("strides made non-negative first")
    });
    kernels::Stacked {
        values: t.storage::<E>(),
        offset: t.layout().start_offset(),
        batch,
        rows,
        cols,
    }
}

fn tensor<E: burn::tensor::Element>(values: Vec<E>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Runs `f` on the f32 or f64 values of the tensors (the kernels' two float types).
macro_rules! by_dtype {
    ($dtype:expr, $op:literal, |$e:ident| $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $e = f32;
                $body
            }
            DType::F64 => {
                type $e = f64;
                $body
            }
            other => panic!("{}: gaussmask-cpu-ops runs f32 and f64, got {other:?}", $op),
        }
    };
}

fn geometry(x: &Shape, weight: &Shape, padding: usize) -> ConvGeometry {
    ConvGeometry {
        c: x[1],
        h: x[2],
        w: x[3],
        o: weight[0],
        k: weight[2],
        pad: padding,
    }
}

impl CpuOps for Flex {
    fn cpu_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: usize,
    ) -> FlexTensor {
        let g = geometry(&shape_of(&x), &shape_of(&weight), padding);
        let b = shape_of(&x)[0];
        by_dtype!(x.dtype(), "conv2d", |E| {
            let y = kernels::conv2d::<E>(&g, &values(&x), &values(&weight), &values(&bias));
            tensor(y, [b, g.o, g.out_h(), g.out_w()])
        })
    }

    fn cpu_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        padding: usize,
        input_grad: bool,
        param_grad: bool,
    ) -> Three<Self> {
        let g = geometry(&shape_of(&x), &shape_of(&weight), padding);
        let (xs, ws) = (shape_of(&x), shape_of(&weight));
        let wanted = Wanted {
            input: input_grad,
            params: param_grad,
        };
        by_dtype!(x.dtype(), "conv2d backward", |E| {
            let (dx, dw, db) = kernels::conv2d_backward::<E>(
                &g,
                &values(&x),
                &values(&weight),
                &values(&output_grad),
                wanted,
            );
            Three::new((tensor(dx, xs), tensor(dw, ws), tensor(db, [g.o])))
        })
    }

    fn cpu_conv2d_per_sample_weight(
        x: FlexTensor,
        output_grad: FlexTensor,
        kernel: usize,
        padding: usize,
    ) -> FlexTensor {
        let (xs, ys) = (shape_of(&x), shape_of(&output_grad));
        let g = geometry(&xs, &Shape::from([ys[1], xs[1], kernel, kernel]), padding);
        assert_eq!(
            [g.out_h(), g.out_w()],
            [ys[2], ys[3]],
            "conv2d per-sample weight: ∂y's shape"
        );
        by_dtype!(x.dtype(), "conv2d per-sample weight", |E| {
            let dw = kernels::conv2d_per_sample_weight::<E>(&g, &values(&x), &values(&output_grad));
            tensor(dw, [xs[0], g.o, g.c * kernel * kernel])
        })
    }

    fn cpu_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> Three<Self> {
        let (shape, channels, s) = per_channel(&x);
        by_dtype!(x.dtype(), "batch norm", |E| {
            let (y, mean, var) = kernels::batch_norm_train::<E>(
                &values(&x),
                &values(&gamma),
                &values(&beta),
                s,
                epsilon,
            );
            Three::new((
                tensor(y, shape),
                tensor(mean, [channels]),
                tensor(var, [channels]),
            ))
        })
    }

    fn cpu_relu_max_pool2(x: FlexTensor) -> FlexTensor {
        let s = shape_of(&x);
        by_dtype!(x.dtype(), "max-pool", |E| {
            tensor(
                kernels::relu_max_pool2::<E>(&values(&x), s[2], s[3]),
                [s[0], s[1], s[2] / 2, s[3] / 2],
            )
        })
    }

    fn cpu_relu_max_pool2_backward(x: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let s = shape_of(&x);
        by_dtype!(x.dtype(), "max-pool backward", |E| {
            let dx = kernels::relu_max_pool2_backward::<E>(
                &values(&x),
                &values(&output_grad),
                s[2],
                s[3],
            );
            tensor(dx, s)
        })
    }

    fn cpu_relu_matmul(h: FlexTensor, w: FlexTensor, scale: f64) -> FlexTensor {
        let dims = matmul_dims(&h, &w);
        let [r, n, _, m] = dims;
        by_dtype!(h.dtype(), "relu matmul", |E| {
            let (h, w) = (nonnegative(&h), nonnegative(&w));
            tensor(
                kernels::relu_matmul(dims, stacked(&h), stacked(&w), E::of(scale)),
                [r, n, m],
            )
        })
    }

    fn cpu_relu_matmul_backward(
        h: FlexTensor,
        w: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        scale: f64,
        [want_h, want_w]: [bool; 2],
    ) -> Two<Self> {
        let dims = matmul_dims(&h, &w);
        let [r, n, k, m] = dims;
        by_dtype!(h.dtype(), "relu matmul backward", |E| {
            let (h, w) = (nonnegative(&h), nonnegative(&w));
            let (dh, dw) = kernels::relu_matmul_backward(
                dims,
                stacked(&h),
                stacked(&w),
                &values(&output),
                &values(&output_grad),
                E::of(scale),
                want_h,
                want_w,
            );
            let shape = |want: bool, s: [usize; 3]| if want { s } else { [0, 0, 0] };
            Two {
                first: tensor(dh, shape(want_h, [r, n, k])),
                second: tensor(dw, shape(want_w, [r, k, m])),
            }
        })
    }

    fn cpu_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        output_grad: FlexTensor,
    ) -> Three<Self> {
        let (shape, channels, s) = per_channel(&x);
        by_dtype!(x.dtype(), "batch norm backward", |E| {
            let (dx, dgamma, dbeta) = kernels::batch_norm_train_backward::<E>(
                &values(&x),
                &values(&gamma),
                &values(&mean),
                &values(&variance),
                epsilon,
                &values(&output_grad),
                s,
            );
            Three::new((
                tensor(dx, shape),
                tensor(dgamma, [channels]),
                tensor(dbeta, [channels]),
            ))
        })
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl<B: CpuOps> Backward<B, 3> for Conv2dBackward {
    type State = (NodeId, NodeId, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let input_grad = node_x.is_some();
        let param_grad = node_weight.is_some() || node_bias.is_some();
        let (dx, dweight, dbias) =
            B::cpu_conv2d_backward(x, weight, grad, padding, input_grad, param_grad).into_parts();
        for (node, g) in [(node_x, dx), (node_weight, dweight), (node_bias, dbias)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl<B: CpuOps> Backward<B, 3> for BatchNormBackward {
    // x and γ are checkpointed; the batch statistics come along as the forward computed them.
    type State = (
        NodeId,
        NodeId,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
        let (dx, dgamma, dbeta) =
            B::cpu_batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad).into_parts();
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

#[derive(Debug)]
struct ReluMaxPoolBackward;

impl<B: CpuOps> Backward<B, 1> for ReluMaxPoolBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::cpu_relu_max_pool2_backward(x, grad));
        }
    }
}

#[derive(Debug)]
struct ReluMatmulBackward;

impl<B: CpuOps> Backward<B, 2> for ReluMatmulBackward {
    /// h and w (checkpointed), the output, the scale.
    type State = (NodeId, NodeId, B::FloatTensorPrimitive, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_h, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (h_state, w_state, output, scale) = ops.state;
        let h = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(h_state);
        let w = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(w_state);
        let wanted = [node_h.is_some(), node_w.is_some()];
        let Two { first, second } = B::cpu_relu_matmul_backward(h, w, output, grad, scale, wanted);
        for (node, g) in [(node_h, first), (node_w, second)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: CpuOps, C: CheckpointStrategy> CpuOps for Autodiff<B, C> {
    fn cpu_relu_max_pool2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluMaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::cpu_relu_max_pool2(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_relu_max_pool2(x.into_primitive())),
        }
    }

    fn cpu_relu_max_pool2_backward(
        _x: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        panic!("gaussmask-cpu-ops: the max-pool backward is not differentiable")
    }

    fn cpu_relu_matmul(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        match ReluMatmulBackward
            .prepare::<C>([h.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (h_state, w_state) = (prep.checkpoint(&h), prep.checkpoint(&w));
                let y = B::cpu_relu_matmul(h.into_primitive(), w.into_primitive(), scale);
                prep.finish((h_state, w_state, y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_relu_matmul(
                h.into_primitive(),
                w.into_primitive(),
                scale,
            )),
        }
    }

    fn cpu_relu_matmul_backward(
        _h: FloatTensor<Self>,
        _w: FloatTensor<Self>,
        _output: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
        _scale: f64,
        _wanted: [bool; 2],
    ) -> Two<Self> {
        panic!("gaussmask-cpu-ops: the relu matmul backward is not differentiable")
    }

    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight), padding);
                let y = B::cpu_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    padding,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                padding,
            )),
        }
    }

    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> Three<Self> {
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_state, gamma_state) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let (y, mean, var) = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                )
                .into_parts();
                let state = (x_state, gamma_state, mean.clone(), var.clone(), epsilon);
                let y = prep.finish(state, y);
                Three::new((
                    y,
                    FloatTensor::<Self>::new(mean),
                    FloatTensor::<Self>::new(var),
                ))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                )
                .into_parts();
                Three::new((
                    prep.finish(y),
                    FloatTensor::<Self>::new(mean),
                    FloatTensor::<Self>::new(var),
                ))
            }
        }
    }

    fn cpu_conv2d_backward(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
        _padding: usize,
        _input_grad: bool,
        _param_grad: bool,
    ) -> Three<Self> {
        panic!("gaussmask-cpu-ops: the conv2d backward is not differentiable")
    }

    /// Not recorded: per-sample gradients are read off a finished backward pass.
    fn cpu_conv2d_per_sample_weight(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        kernel: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::cpu_conv2d_per_sample_weight(
            x.into_primitive(),
            output_grad.into_primitive(),
            kernel,
            padding,
        ))
    }

    fn cpu_batch_norm_train_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _variance: FloatTensor<Self>,
        _epsilon: f64,
        _output_grad: FloatTensor<Self>,
    ) -> Three<Self> {
        panic!("gaussmask-cpu-ops: the batch-norm backward is not differentiable")
    }
}
