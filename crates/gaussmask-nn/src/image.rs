//! Image classifiers behind the Gaussian input mask: an MLP (one hidden layer or more) and a
//! small CNN (conv → batch norm → ReLU → 2×2 max-pool blocks, then dropout and a dense head).
//! Both are one module, [`MaskedNet`], built from `burn::nn` layers ([`Linear`], [`Conv2d`],
//! [`BatchNorm`], [`MaxPool2d`], [`Dropout`]) behind an [`InputMask`]: an MLP is the case with
//! no conv blocks.
//!
//! The mask multiplies every input value by c ~ N(1, κ²), drawn fresh per sample, per value and
//! per step from the mask's seeded host stream (recorded with the weights, so a checkpointed run
//! resumes on the same draws). Like dropout and batch statistics it acts in training only:
//! [`Module::valid`] gives the evaluation model (clean inputs, no dropout, running statistics).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::activation::{relu, tanh};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor};
use gaussmask_core::InputError;
use serde::{Deserialize, Serialize};

use crate::mask::{InputMask, MaskConfig};
use crate::rng::{Stream, tag};
use crate::tensor_io::from_f64;

mod replicas;
pub use replicas::MlpReplicas;

/// Hidden nonlinearity of the dense layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// max(0, ·), the paper's network.
    #[default]
    Relu,
    /// tanh, the reference scripts' MLP.
    Tanh,
}

/// Which image model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Dense layers only.
    #[default]
    Mlp,
    /// Conv blocks, then dense layers.
    Cnn,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Architecture::Mlp => "mlp",
            Architecture::Cnn => "cnn",
        })
    }
}

/// An image model's shape. Defaults: MLP with one hidden layer of 256 ReLU units; CNN with
/// blocks of 16 and 32 channels (5×5 kernels, "same" padding, batch norm), dropout 0.25 and a
/// 128-unit hidden layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageModelConfig {
    /// MLP or CNN.
    #[serde(default)]
    pub architecture: Architecture,
    /// Widths of the hidden dense layers: `[256]` is the one-hidden-layer MLP, `[256, 256]` the
    /// deeper one. For the CNN, the head's hidden layers.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Nonlinearity of the hidden dense layers.
    #[serde(default)]
    pub activation: Activation,
    /// Output channels of each conv block (CNN only).
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// Side of the square conv kernels (odd).
    #[serde(default = "default_kernel")]
    pub kernel: usize,
    /// Batch normalization in the conv blocks.
    #[serde(default = "yes")]
    pub batch_norm: bool,
    /// Dropout probability before the dense head (CNN) or after each hidden layer (MLP).
    #[serde(default)]
    pub dropout: f64,
    /// The input mask's family and sharing (`[model.mask]`; the Gaussian mask by default); κ
    /// and the seed are given to [`ImageModelConfig::init`].
    #[serde(default)]
    pub mask: MaskConfig,
}

fn default_hidden() -> Vec<usize> {
    vec![256]
}
fn default_channels() -> Vec<usize> {
    vec![16, 32]
}
fn default_kernel() -> usize {
    5
}
fn yes() -> bool {
    true
}

impl Default for ImageModelConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::Mlp,
            hidden: default_hidden(),
            activation: Activation::Relu,
            channels: default_channels(),
            kernel: default_kernel(),
            batch_norm: true,
            dropout: 0.0,
            mask: MaskConfig::default(),
        }
    }
}

impl ImageModelConfig {
    /// Checks every field for images of `shape` = (channels, height, width); the error names
    /// the field.
    pub fn validate(&self, shape: [usize; 3]) -> Result<(), InputError> {
        self.mask.validate("model.mask")?;
        if self.hidden.contains(&0) {
            return Err(format!("model.hidden must be widths ≥ 1, got {:?}", self.hidden).into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("model.dropout must be in [0, 1), got {}", self.dropout).into());
        }
        if self.architecture == Architecture::Cnn {
            if self.channels.is_empty() || self.channels.contains(&0) {
                return Err(format!(
                    "model.channels must be a non-empty list of counts ≥ 1, got {:?}",
                    self.channels
                )
                .into());
            }
            if self.kernel.is_multiple_of(2) {
                return Err(format!("model.kernel must be odd, got {}", self.kernel).into());
            }
            let side = shape[1].min(shape[2]);
            if side >> self.channels.len() == 0 {
                return Err(format!(
                    "model.channels: {} pooling blocks shrink a {}×{} image to nothing",
                    self.channels.len(),
                    shape[1],
                    shape[2]
                )
                .into());
            }
        }
        Ok(())
    }

    fn conv_blocks(&self) -> &[usize] {
        match self.architecture {
            Architecture::Mlp => &[],
            Architecture::Cnn => &self.channels,
        }
    }

    /// Builds the model for images of `shape` and `classes` classes behind the config's mask
    /// at level `kappa` (0: none), weights drawn from the seed's init stream like PyTorch's
    /// defaults: U(−1/√fan_in, 1/√fan_in) for weights and biases; batch-norm scale 1, shift 0.
    /// The mask's stream is keyed by `seed` too.
    pub fn init(
        &self,
        shape: [usize; 3],
        classes: usize,
        kappa: f64,
        seed: u64,
        device: &Device,
    ) -> MaskedNet {
        let mut stream = Stream::new(seed, tag::INIT);
        let mut uniform = |count: usize, fan_in: usize| -> Vec<f64> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..count)
                .map(|_| bound * (2.0 * stream.uniform() - 1.0))
                .collect()
        };
        let [mut c, mut h, mut w] = shape;
        let k = self.kernel;
        let pad = k / 2;
        let (mut convs, mut norms) = (Vec::new(), Vec::new());
        for &out in self.conv_blocks() {
            let fan_in = c * k * k;
            let mut conv = Conv2dConfig::new([c, out], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_initializer(Initializer::Zeros)
                .init(device);
            conv.weight = Param::from_tensor(from_f64(
                uniform(out * fan_in, fan_in),
                [out, c, k, k],
                device,
            ));
            conv.bias = Some(Param::from_tensor(from_f64(
                uniform(out, fan_in),
                [out],
                device,
            )));
            convs.push(conv);
            if self.batch_norm {
                norms.push(BatchNormConfig::new(out).init(device));
            }
            (c, h, w) = (out, h / 2, w / 2);
        }
        let mut fan_in = c * h * w;
        let mut dense = Vec::new();
        for &out in self.hidden.iter().chain(std::iter::once(&classes)) {
            let mut linear = LinearConfig::new(fan_in, out)
                .with_initializer(Initializer::Zeros)
                .init(device);
            linear.weight = Param::from_tensor(from_f64(
                uniform(fan_in * out, fan_in),
                [fan_in, out],
                device,
            ));
            linear.bias = Some(Param::from_tensor(from_f64(
                uniform(out, fan_in),
                [out],
                device,
            )));
            dense.push(linear);
            fan_in = out;
        }
        MaskedNet {
            mask: self.mask.init(kappa, seed).to_device(device),
            convs,
            norms,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            dense,
            activation: self.activation,
            shape,
            label_smoothing: 0.0,
            cpu_ops: true,
        }
    }
}

/// An image classifier: the input mask, conv blocks (none for an MLP), then dense layers;
/// logits out.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Tensor};
/// use gaussmask_nn::image::{Architecture, ImageModelConfig};
///
/// let device = Device::flex().autodiff();
/// let config = ImageModelConfig { architecture: Architecture::Cnn, ..ImageModelConfig::default() };
/// let net = config.init([1, 28, 28], 10, 0.5, 0, &device); // κ = 0.5, seed 0
/// let x = Tensor::<2>::ones([8, 784], &device);
/// assert_eq!(net.forward(x.clone()).dims(), [8, 10]); // masked inputs, batch statistics
/// let eval = net.valid(); // clean inputs, no dropout, running statistics
/// let logits = eval.forward(x.without_autodiff());
/// assert!(logits.clone().equal(eval.forward(Tensor::ones([8, 784], &Device::flex()))).all().into_scalar::<bool>());
/// ```
#[derive(Module, Debug)]
pub struct MaskedNet {
    /// The input mask (identity after `valid()`).
    pub mask: InputMask,
    /// Conv layers of the blocks, input side first.
    pub convs: Vec<Conv2d>,
    /// Batch norm of each block (empty without batch norm).
    pub norms: Vec<BatchNorm>,
    /// The blocks' 2×2 max-pool.
    pub pool: MaxPool2d,
    /// Dropout before the dense head (CNN) or after each hidden layer (MLP).
    pub dropout: Dropout,
    /// Dense layers, the output layer last.
    pub dense: Vec<Linear>,
    /// Nonlinearity of the hidden dense layers.
    #[module(skip)]
    pub activation: Activation,
    /// Image shape (c, h, w) of the flattened inputs.
    #[module(skip)]
    pub shape: [usize; 3],
    /// Label smoothing ε of the training loss (cross-entropy against (1 − ε)·one-hot + ε/K).
    #[module(skip)]
    pub label_smoothing: f64,
    /// Run the conv blocks' convolutions, batch norms and relu + max-pools through
    /// `gaussmask-cpu-ops` where it covers them (flex devices), instead of the layers' own
    /// forward. Same values up to rounding; on by default.
    #[module(skip)]
    pub cpu_ops: bool,
}

impl MaskedNet {
    /// The same model trained with label smoothing `epsilon`.
    pub fn with_label_smoothing(self, epsilon: f64) -> Self {
        Self {
            label_smoothing: epsilon,
            ..self
        }
    }

    /// The same model with the `gaussmask-cpu-ops` path on or off (see [`MaskedNet::cpu_ops`]).
    pub fn with_cpu_ops(self, on: bool) -> Self {
        Self {
            cpu_ops: on,
            ..self
        }
    }

    /// Logits, the samples being the batch positions (fresh masks need no more).
    ///
    /// # Shapes
    /// - `x`: `[b, c·h·w]`, images flattened channel-major; returns `[b, classes]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let b = x.dims()[0];
        self.forward_indexed(x, &(0..b).collect::<Vec<_>>())
    }

    /// Logits of the samples whose dataset indices are `rows`. In training mode on an autodiff
    /// device: the input mask, dropout, batch norm on batch statistics (updating the running
    /// ones). After `valid()`: clean inputs, no dropout, the running statistics.
    ///
    /// # Shapes
    /// - `x`: `[b, c·h·w]`, `rows`: b indices; returns `[b, classes]`
    pub fn forward_indexed(&self, x: Tensor<2>, rows: &[usize]) -> Tensor<2> {
        self.run(x, rows, None)
    }

    /// [`MaskedNet::forward_indexed`] with a zero probe (tracked) added to the output of every
    /// conv and dense layer, returned with the layer's input. The gradient of a loss with
    /// respect to a probe is its gradient with respect to the layer's output, row by row: what
    /// per-sample gradients and their norms are computed from without a backward pass per
    /// sample (ghost clipping). Adding a zero changes no value. The dense layers' parameters,
    /// and the conv layers' where `gaussmask-cpu-ops` runs them, enter untracked, so the backward
    /// pass forms the probes' gradients and no parameter's.
    ///
    /// # Shapes
    /// - `x`: `[b, c·h·w]`, `rows`: b indices; returns the logits `[b, classes]`, and per conv
    ///   layer its input `[b, c, h, w]` and probe `[b, o, h', w']`, per dense layer its input
    ///   `[b, in]` and probe `[b, out]`
    ///
    /// # Panics
    /// With batch norm, which couples the samples of a batch.
    pub fn forward_probed(&self, x: Tensor<2>, rows: &[usize]) -> (Tensor<2>, Probes) {
        assert!(
            self.norms.is_empty(),
            "forward_probed: batch norm couples the samples"
        );
        let mut probes = Probes::default();
        let logits = self.run(x, rows, Some(&mut probes));
        (logits, probes)
    }

    /// The forward pass, probed or not.
    fn run(&self, x: Tensor<2>, rows: &[usize], mut probes: Option<&mut Probes>) -> Tensor<2> {
        let b = x.dims()[0];
        let x = self.mask.forward_indexed(x, rows);
        let mut h = if self.convs.is_empty() {
            x
        } else {
            let [c, height, width] = self.shape;
            let mut z: Tensor<4> = x.reshape([b, c, height, width]);
            let probing = probes.is_some();
            for (i, conv) in self.convs.iter().enumerate() {
                let list = probes.as_deref_mut().map(|p| &mut p.convs);
                z = probed(list, z, |z| match (self.cpu_ops, probing) {
                    (true, false) => gaussmask_cpu_ops::conv2d_layer(conv, z),
                    (true, true) => gaussmask_cpu_ops::conv2d_layer_untracked(conv, z),
                    (false, _) => conv.forward(z),
                });
                if let Some(norm) = self.norms.get(i) {
                    z = match self.cpu_ops {
                        true => gaussmask_cpu_ops::batch_norm_layer(norm, z),
                        false => norm.forward(z),
                    };
                }
                z = match self.cpu_ops {
                    true => gaussmask_cpu_ops::relu_max_pool_layer(&self.pool, z),
                    false => self.pool.forward(relu(z)),
                };
            }
            z.flatten(1, 3)
        };
        let last = self.dense.len() - 1;
        for (i, layer) in self.dense.iter().enumerate() {
            // Dropout sits where the features enter the dense head (CNN), or after every hidden
            // layer (MLP).
            let drop_here = if self.convs.is_empty() { i > 0 } else { i == 0 };
            if drop_here {
                h = self.dropout.forward(h);
            }
            let list = probes.as_deref_mut().map(|p| &mut p.dense);
            h = match list {
                // Untracked parameters (`detach` alone keeps them requiring a gradient): the
                // probes' gradients are all the backward pass forms.
                Some(list) => probed(Some(list), h, |h| {
                    let bias = layer.bias.as_ref().map(|b| b.val().set_require_grad(false));
                    linear(h, layer.weight.val().set_require_grad(false), bias)
                }),
                None => layer.forward(h),
            };
            if i < last {
                h = match self.activation {
                    Activation::Relu => relu(h),
                    Activation::Tanh => tanh(h),
                };
            }
        }
        h
    }
}

/// A layer's input and the zero probe added to its output ([`MaskedNet::forward_probed`]).
#[derive(Clone, Debug)]
pub struct Probe<const D: usize> {
    /// What entered the layer.
    pub input: Tensor<D>,
    /// The zeros added to its output (tracked: its gradient is the output's).
    pub probe: Tensor<D>,
}

/// The probes of one forward pass, input side first.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// One per conv layer.
    pub convs: Vec<Probe<4>>,
    /// One per dense layer.
    pub dense: Vec<Probe<2>>,
}

/// `layer(input)`, and with `probes`, plus a zero probe kept there with the input.
fn probed<const D: usize>(
    probes: Option<&mut Vec<Probe<D>>>,
    input: Tensor<D>,
    layer: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    let Some(list) = probes else {
        return layer(input);
    };
    let out = layer(input.clone());
    let probe = Tensor::zeros(out.dims(), &out.device()).require_grad();
    list.push(Probe {
        input,
        probe: probe.clone(),
    });
    out + probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_mlp_and_the_cnn() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([3, 28 * 28], &device);
        for architecture in [Architecture::Mlp, Architecture::Cnn] {
            let config = ImageModelConfig {
                architecture,
                hidden: vec![8, 6],
                channels: vec![4, 2],
                dropout: 0.5,
                ..ImageModelConfig::default()
            };
            config.validate([1, 28, 28]).unwrap();
            let net = config.init([1, 28, 28], 10, 0.5, 0, &device);
            assert_eq!(net.convs.len(), config.conv_blocks().len());
            let logits = net.forward(x.clone());
            assert_eq!(logits.dims(), [3, 10]);
            // Evaluation is deterministic (no mask, no dropout); training is not.
            let eval = net.valid();
            let clean = eval.forward(x.clone().without_autodiff());
            assert_eq!(clean.dims(), [3, 10]);
            let again = eval.forward(x.clone().without_autodiff());
            assert!(clean.equal(again).all().into_scalar::<bool>());
            let other = net.forward(x.clone());
            assert!(!logits.equal(other).all().into_scalar::<bool>());
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ImageModelConfig {
            architecture: Architecture::Cnn,
            kernel: 4,
            ..ImageModelConfig::default()
        };
        assert!(
            c.validate([1, 28, 28])
                .unwrap_err()
                .contains("model.kernel")
        );
        c.kernel = 3;
        c.channels = vec![1; 6];
        assert!(
            c.validate([1, 28, 28])
                .unwrap_err()
                .contains("model.channels")
        );
        c.dropout = 1.0;
        assert!(
            c.validate([1, 28, 28])
                .unwrap_err()
                .contains("model.dropout")
        );
    }

    #[test]
    fn the_config_s_mask_family_is_the_model_s() {
        // A Bernoulli mask with keep probability ½ zeroes about half the inputs; the Gaussian
        // mask at the same κ zeroes none.
        let device = Device::flex();
        let x = Tensor::<2>::ones([4, 28 * 28], &device);
        let zeros = |family: crate::mask::MaskFamily| {
            let config = ImageModelConfig {
                mask: MaskConfig {
                    family,
                    ..MaskConfig::default()
                },
                ..ImageModelConfig::default()
            };
            config.validate([1, 28, 28]).unwrap();
            let net = config.init([1, 28, 28], 10, 1.0, 7, &device);
            let masked = crate::tensor_io::to_f64(net.mask.forward(x.clone()));
            masked.iter().filter(|&&v| v == 0.0).count() as f64 / masked.len() as f64
        };
        assert_eq!(zeros(crate::mask::MaskFamily::Gaussian), 0.0);
        let dropped = zeros(crate::mask::MaskFamily::Bernoulli);
        assert!((dropped - 0.5).abs() < 0.05, "{dropped}");
        let bad = ImageModelConfig {
            mask: MaskConfig {
                truncation: -1.0,
                ..MaskConfig::default()
            },
            ..ImageModelConfig::default()
        };
        let e = bad.validate([1, 28, 28]).unwrap_err();
        assert!(e.contains("model.mask.truncation"), "{e}");
    }
}
