//! The paper's network f(W, x) = (1/√m) Σ_r a_r σ(w_rᵀx), held as R independent replicas.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use gaussmask_core::InputError;
use gaussmask_cpu_ops::relu_matmul;
use serde::{Deserialize, Serialize};

use crate::mask::{InputMask, MaskConfig, Replica};
use crate::rng::{Stream, tag};
use crate::tensor_io::from_f64;

/// Configuration of [`TwoLayerRelu`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoLayerReluConfig {
    /// Input dimension d; 0 in an experiment config means "the data's d".
    #[serde(default)]
    pub input_dim: usize,
    /// Hidden width m.
    pub width: usize,
    /// Initialization scale τ: w_r ~ N(0, τ² I).
    #[serde(default = "one")]
    pub tau: f64,
    /// Train the output signs a too (Razborov's setting); frozen by default.
    #[serde(default)]
    pub train_output: bool,
    /// The input mask in front of the network.
    #[serde(default)]
    pub mask: MaskConfig,
}

fn one() -> f64 {
    1.0
}

impl TwoLayerReluConfig {
    /// A config with τ = 1, frozen output signs and a Gaussian mask.
    pub fn new(input_dim: usize, width: usize) -> Self {
        Self {
            input_dim,
            width,
            tau: 1.0,
            train_output: false,
            mask: MaskConfig::default(),
        }
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.input_dim == 0 {
            return Err("model.input_dim must be ≥ 1, got 0".into());
        }
        if self.width == 0 {
            return Err("model.width must be ≥ 1, got 0".into());
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(format!("model.tau must be a finite number > 0, got {}", self.tau).into());
        }
        self.mask.validate("model.mask")
    }

    /// Initial weights of one replica, drawn from its own stream: W row-major `[m, d]`, then a.
    pub fn initial_weights(&self, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut stream = Stream::new(seed, tag::INIT);
        let mut w = vec![0.0; self.width * self.input_dim];
        stream.fill_normal(&mut w);
        w.iter_mut().for_each(|v| *v *= self.tau);
        let a = (0..self.width).map(|_| stream.sign()).collect();
        (w, a)
    }

    /// Builds the network for `replicas`, each initialized from its own seed.
    pub fn init(&self, replicas: &[Replica], device: &Device) -> TwoLayerRelu {
        let (mut w, mut a) = (Vec::new(), Vec::new());
        for rep in replicas {
            let (wr, ar) = self.initial_weights(rep.seed);
            w.extend(wr);
            a.extend(ar);
        }
        TwoLayerRelu::from_weights(
            w,
            a,
            [replicas.len(), self.width, self.input_dim],
            self.train_output,
            self.mask.init_replicas(replicas).to_device(device),
            device,
        )
    }
}

/// R replicas of a two-layer ReLU network with an optional input mask.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use gaussmask_nn::{Replica, TwoLayerReluConfig};
///
/// let device = Device::flex();
/// // A κ grid × seeds: each replica has its own initial weights and mask stream.
/// let replicas = [(0.0, 1), (0.5, 1), (0.5, 2)].map(|(kappa, seed)| Replica { kappa, seed });
/// let net = TwoLayerReluConfig::new(4, 16).init(&replicas, &device);
/// assert_eq!(net.dims(), [3, 16, 4]);
/// let x = Tensor::<3>::ones([1, 5, 4], &device); // 5 samples shared by every replica
/// let rows: Vec<usize> = (0..5).collect();
/// assert_eq!(net.forward(x.clone(), &rows).dims(), [3, 5]);
/// assert_eq!(net.forward_unmasked(x).dims(), [3, 5]); // no mask
/// ```
#[derive(Module, Debug)]
pub struct TwoLayerRelu {
    /// First-layer weights W, `[R, m, d]`.
    pub w: Param<Tensor<3>>,
    /// Output signs a, `[R, m]`; saved, frozen unless the config trains them.
    pub a: Param<Tensor<2>>,
    /// Input mask applied in training mode.
    pub mask: InputMask,
}

impl TwoLayerRelu {
    /// Builds the module from host weights (e.g. loaded from .npy).
    ///
    /// # Shapes
    /// - `w`: `R·m·d` values, `a`: `R·m` values, `dims` = `[R, m, d]`
    pub fn from_weights(
        w: Vec<f64>,
        a: Vec<f64>,
        dims: [usize; 3],
        train_output: bool,
        mask: InputMask,
        device: &Device,
    ) -> Self {
        let [r, m, _] = dims;
        let w: Tensor<3> = from_f64(w, dims, device);
        let a: Tensor<2> = from_f64(a, [r, m], device);
        Self {
            w: Param::from_tensor(w),
            a: Param::from_tensor(a).set_require_grad(train_output),
            mask,
        }
    }

    /// `[R, m, d]`.
    pub fn dims(&self) -> [usize; 3] {
        self.w.val().dims()
    }

    /// Network output without the mask: on clean inputs, or on inputs masked elsewhere.
    ///
    /// # Shapes
    /// - `x`: `[R, n, d]` or `[1, n, d]`
    /// - returns `[R, n]`
    pub fn forward_unmasked(&self, x: Tensor<3>) -> Tensor<2> {
        output(self.w.val(), self.a.val(), x)
    }

    /// Output on freshly masked inputs (the mask is the identity after `valid()`), like
    /// `burn::nn::Dropout`, which acts in `forward` too.
    ///
    /// # Shapes
    /// - `x`: `[1, n, d]` or `[R, n, d]`, `rows`: dataset indices of the n samples
    /// - returns `[R, n]`
    pub fn forward(&self, x: Tensor<3>, rows: &[usize]) -> Tensor<2> {
        self.forward_unmasked(self.mask.forward_indexed(x, rows))
    }
}

/// f(W, x) = (1/√m) relu(x Wᵀ) a for every replica: [`TwoLayerRelu::forward_unmasked`] on raw
/// tensors.
///
/// # Shapes
/// - `w`: `[R, m, d]`, `a`: `[R, m]`, `x`: `[R, n, d]` or `[1, n, d]`
/// - returns `[R, n]`
pub fn output(w: Tensor<3>, a: Tensor<2>, x: Tensor<3>) -> Tensor<2> {
    let [r, m, d] = w.dims();
    let n = x.dims()[1];
    let x = if x.dims()[0] == r {
        x
    } else {
        x.expand([r, n, d])
    };
    // relu(x Wᵀ) as one node on flex (bit-identical to Burn's chain).
    let hidden = relu_matmul(x, w.swap_dims(1, 2), 1.0); // [R, n, m]
    let out = hidden.matmul(a.unsqueeze_dim::<3>(2)); // [R, n, 1]
    out.reshape([r, n]) * (1.0 / (m as f64).sqrt())
}

/// ½ Σ_i (f_i − y_i)² per replica.
///
/// # Shapes
/// - `pred`: `[R, n]`, `y`: `[1, n]` or `[R, n]`
/// - returns `[R]`
pub fn half_sse(pred: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    let r = pred.dims()[0];
    (pred - y).square().sum_dim(1).reshape([r]) * 0.5
}
