//! Image classifiers behind the Gaussian input mask: an MLP (one hidden layer or more) and a
//! small CNN (conv → batch norm → ReLU → 2×2 max-pool blocks, then dropout and a dense head).
//! Both are one module, [`ImageNet`]: an MLP is the case with no conv blocks.
//!
//! The mask multiplies every input value by c = 1 + κ z, z ~ N(0, 1), drawn fresh per sample,
//! per value and per step from a seeded [`Stream`] (so a checkpointed run resumes on the same
//! draws); it acts in training only, and test accuracy is measured with the mask off.

use burn::module::{Module, Param};
use burn::tensor::activation::{relu, tanh};
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::{Stream, tag};
use crate::tensor_io::from_f64;

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
        }
    }
}

impl ImageModelConfig {
    /// Checks every field for images of `shape` = (channels, height, width); the error names
    /// the field.
    pub fn validate(&self, shape: [usize; 3]) -> Result<(), String> {
        if self.hidden.contains(&0) {
            return Err(format!(
                "model.hidden must be widths ≥ 1, got {:?}",
                self.hidden
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.architecture == Architecture::Cnn {
            if self.channels.is_empty() || self.channels.contains(&0) {
                return Err(format!(
                    "model.channels must be a non-empty list of counts ≥ 1, got {:?}",
                    self.channels
                ));
            }
            if self.kernel.is_multiple_of(2) {
                return Err(format!("model.kernel must be odd, got {}", self.kernel));
            }
            let side = shape[1].min(shape[2]);
            if side >> self.channels.len() == 0 {
                return Err(format!(
                    "model.channels: {} pooling blocks shrink a {}×{} image to nothing",
                    self.channels.len(),
                    shape[1],
                    shape[2]
                ));
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

    /// Builds the model for images of `shape` and `classes` classes, weights drawn from the
    /// seed's init stream like PyTorch's defaults: U(−1/√fan_in, 1/√fan_in) for weights and
    /// biases; batch-norm scale 1, shift 0.
    pub fn init(&self, shape: [usize; 3], classes: usize, seed: u64, device: &Device) -> ImageNet {
        let mut stream = Stream::new(seed, tag::INIT);
        let mut uniform = |count: usize, fan_in: usize| -> Vec<f64> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..count)
                .map(|_| bound * (2.0 * stream.uniform() - 1.0))
                .collect()
        };
        let [mut c, mut h, mut w] = shape;
        let k = self.kernel;
        let mut convs = Vec::new();
        for &out in self.conv_blocks() {
            let fan_in = c * k * k;
            let ones = vec![1.0; out];
            let zeros = vec![0.0; out];
            convs.push(ConvBlock {
                weight: Param::from_tensor(from_f64(
                    uniform(out * fan_in, fan_in),
                    [out, c, k, k],
                    device,
                )),
                bias: Param::from_tensor(from_f64(uniform(out, fan_in), [out], device)),
                gamma: Param::from_tensor(from_f64(ones.clone(), [out], device)),
                beta: Param::from_tensor(from_f64(zeros.clone(), [out], device)),
                running_mean: Param::from_tensor(from_f64(zeros, [out], device))
                    .set_require_grad(false),
                running_var: Param::from_tensor(from_f64(ones, [out], device))
                    .set_require_grad(false),
            });
            (c, h, w) = (out, h / 2, w / 2);
        }
        let mut fan_in = c * h * w;
        let mut dense = Vec::new();
        for &out in self.hidden.iter().chain(std::iter::once(&classes)) {
            dense.push(Dense {
                weight: Param::from_tensor(from_f64(
                    uniform(fan_in * out, fan_in),
                    [fan_in, out],
                    device,
                )),
                bias: Param::from_tensor(from_f64(uniform(out, fan_in), [out], device)),
            });
            fan_in = out;
        }
        ImageNet { convs, dense }
    }
}

/// A dense layer y = x W + b.
#[derive(Module, Debug)]
pub struct Dense {
    /// W `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// b `[out]`.
    pub bias: Param<Tensor<1>>,
}

/// conv (k×k, "same" padding) → batch norm → ReLU → 2×2 max-pool.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// Kernels `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Conv bias `[out]`.
    pub bias: Param<Tensor<1>>,
    /// Batch-norm scale `[out]`.
    pub gamma: Param<Tensor<1>>,
    /// Batch-norm shift `[out]`.
    pub beta: Param<Tensor<1>>,
    /// Running mean of the conv outputs `[out]` (not trained; used in evaluation).
    pub running_mean: Param<Tensor<1>>,
    /// Running variance `[out]` (not trained).
    pub running_var: Param<Tensor<1>>,
}

/// Batch-norm momentum of the running statistics (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// Randomness of one training forward pass.
pub struct TrainNoise<'a> {
    /// κ of the input mask (0: no mask).
    pub kappa: f64,
    /// Source of the mask's and dropout's draws.
    pub stream: &'a mut Stream,
}

/// An image classifier: conv blocks (none for an MLP), then dense layers; logits out.
#[derive(Module, Debug)]
pub struct ImageNet {
    /// Conv blocks, input side first.
    pub convs: Vec<ConvBlock>,
    /// Dense layers, the output layer last.
    pub dense: Vec<Dense>,
}

/// What a training forward pass also returns: each conv block's batch mean and variance, for
/// [`ImageNet::update_running_stats`].
pub type BatchStats = Vec<(Tensor<1>, Tensor<1>)>;

impl ImageNet {
    /// Logits. With `noise` (training): the input mask with its κ, dropout with probability
    /// `config.dropout`, batch norm on batch statistics. Without (evaluation): clean input, no
    /// dropout, batch norm on the running statistics.
    ///
    /// # Shapes
    /// - `x`: `[b, c·h·w]`, images flattened channel-major; `shape` = (c, h, w)
    /// - returns logits `[b, classes]` and one (mean, var) `[channels]` per conv block
    pub fn forward(
        &self,
        x: Tensor<2>,
        shape: [usize; 3],
        config: &ImageModelConfig,
        mut noise: Option<TrainNoise<'_>>,
    ) -> (Tensor<2>, BatchStats) {
        let [b, dim] = x.dims();
        let device = x.device();
        let mut x = x;
        if let Some(n) = noise.as_mut().filter(|n| n.kappa > 0.0) {
            let mut c = vec![0.0f32; b * dim];
            for v in &mut c {
                *v = (1.0 + n.kappa * n.stream.normal_ziggurat()) as f32;
            }
            x = x * Tensor::from_data(TensorData::new(c, [b, dim]), &device);
        }
        let mut stats = Vec::new();
        let mut h = if self.convs.is_empty() {
            x
        } else {
            let mut z: Tensor<4> = x.reshape([b, shape[0], shape[1], shape[2]]);
            let pad = config.kernel / 2;
            for block in &self.convs {
                z = conv2d(
                    z,
                    block.weight.val(),
                    Some(block.bias.val()),
                    ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
                );
                if config.batch_norm {
                    let (mean, var) = if noise.is_some() {
                        let mean = z.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                        let var = (z.clone() - mean.clone())
                            .powi_scalar(2)
                            .mean_dim(0)
                            .mean_dim(2)
                            .mean_dim(3);
                        stats.push((mean.clone().flatten(0, 3), var.clone().flatten(0, 3)));
                        (mean, var)
                    } else {
                        let ch = block.running_mean.dims()[0];
                        (
                            block.running_mean.val().reshape([1, ch, 1, 1]),
                            block.running_var.val().reshape([1, ch, 1, 1]),
                        )
                    };
                    let ch = mean.dims()[1];
                    z = (z - mean) / (var + BN_EPS).sqrt()
                        * block.gamma.val().reshape([1, ch, 1, 1])
                        + block.beta.val().reshape([1, ch, 1, 1]);
                }
                z = max_pool2d(relu(z), MaxPoolOptions::new([2, 2]));
            }
            z.flatten(1, 3)
        };
        let last = self.dense.len() - 1;
        for (i, layer) in self.dense.iter().enumerate() {
            // Dropout sits where the features enter the dense head (CNN), or after every hidden
            // layer (MLP).
            let drop_here = if self.convs.is_empty() { i > 0 } else { i == 0 };
            if drop_here
                && config.dropout > 0.0
                && let Some(n) = noise.as_mut()
            {
                h = dropout(h, config.dropout, n.stream);
            }
            h = h.matmul(layer.weight.val()) + layer.bias.val().unsqueeze_dim(0);
            if i < last {
                h = match config.activation {
                    Activation::Relu => relu(h),
                    Activation::Tanh => tanh(h),
                };
            }
        }
        (h, stats)
    }

    /// Moves each block's running statistics toward the batch's:
    /// r ← (1 − m) r + m s with m = [`BN_MOMENTUM`] and the unbiased batch variance.
    pub fn update_running_stats(mut self, stats: BatchStats, batch_values: usize) -> Self {
        let unbias = batch_values as f64 / (batch_values.max(2) - 1) as f64;
        for (block, (mean, var)) in self.convs.iter_mut().zip(stats) {
            let m = BN_MOMENTUM;
            let rm = block.running_mean.val() * (1.0 - m) + mean.detach() * m;
            let rv = block.running_var.val() * (1.0 - m) + var.detach() * (m * unbias);
            block.running_mean = Param::from_tensor(rm.detach()).set_require_grad(false);
            block.running_var = Param::from_tensor(rv.detach()).set_require_grad(false);
        }
        self
    }
}

/// Inverted dropout: zero each value with probability `p`, scale the rest by 1/(1 − p).
fn dropout(h: Tensor<2>, p: f64, stream: &mut Stream) -> Tensor<2> {
    let [b, k] = h.dims();
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..b * k)
        .map(|_| {
            if stream.uniform() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    let device = h.device();
    h * Tensor::from_data(TensorData::new(mask, [b, k]), &device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_mlp_and_the_cnn() {
        let device = Device::flex();
        let x = Tensor::<2>::zeros([3, 28 * 28], &device);
        for architecture in [Architecture::Mlp, Architecture::Cnn] {
            let config = ImageModelConfig {
                architecture,
                hidden: vec![8, 6],
                channels: vec![4, 2],
                dropout: 0.5,
                ..ImageModelConfig::default()
            };
            config.validate([1, 28, 28]).unwrap();
            let net = config.init([1, 28, 28], 10, 0, &device);
            let mut stream = Stream::new(0, tag::MASK);
            let noise = TrainNoise {
                kappa: 0.5,
                stream: &mut stream,
            };
            let (logits, stats) = net.forward(x.clone(), [1, 28, 28], &config, Some(noise));
            assert_eq!(logits.dims(), [3, 10]);
            assert_eq!(stats.len(), config.conv_blocks().len());
            let (clean, _) = net.forward(x.clone(), [1, 28, 28], &config, None);
            assert_eq!(clean.dims(), [3, 10]);
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
}
