//! Minibatch training of the image classifiers ([`gaussmask_nn::image::MaskedNet`]) under the
//! input mask, on the generic trainer ([`crate::fit`]): the classifier is [`Trainable`] with
//! `burn::nn`'s cross-entropy (label smoothing included) as its loss, and the settings of an
//! image experiment's `[train]` section ([`ClassifyConfig`]: Adam, AdamW or SGD, weight decay,
//! a constant or cosine learning rate, DP-SGD) become a [`FitConfig`]. Checkpoints are
//! [`Fit::checkpoint`]'s (Burn records of the model and optimizer, plus the streams and the
//! step), so a resumed run ends bit-identical to an uninterrupted one on the same CPU backend.

use gaussmask_core::InputError;
use std::collections::VecDeque;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::ops::PadMode;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use gaussmask_cpu_ops::per_sample_weight_layer;
use gaussmask_data::Dataset;
use gaussmask_nn::Replica;
use gaussmask_nn::image::{ImageModelConfig, MaskedNet, MlpReplicas};
use gaussmask_nn::tensor_io::to_f64;
use serde::{Deserialize, Serialize};

use crate::StateError;
use crate::TrainError;
pub use crate::fit::DpSgd;
use crate::fit::{Batch, Fit, FitConfig, Optimizer, Schedule, Trainable};

/// How a classifier is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Passes over the training set (experiments that train to several lengths set it).
    #[serde(default)]
    pub epochs: usize,
    /// Minibatch size (full batches only: an epoch of n images is ⌊n/b⌋ steps; a size above
    /// n is the whole set, one step an epoch).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Optimizer (default `adam`).
    #[serde(default = "adam")]
    pub optimizer: Optimizer,
    /// Weight decay λ (see [`Optimizer`] for how each optimizer applies it).
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: Schedule,
    /// Label smoothing ε: targets (1 − ε)·one-hot + ε/K.
    #[serde(default)]
    pub label_smoothing: f64,
    /// DP-SGD (absent: ordinary training).
    #[serde(default)]
    pub dp: Option<DpSgd>,
}

fn adam() -> Optimizer {
    Optimizer::Adam
}

impl ClassifyConfig {
    /// Checks every field; the error names it (under `prefix`, e.g. `train`).
    pub fn validate(&self, prefix: &str) -> Result<(), InputError> {
        if self.epochs == 0 {
            return Err(format!("{prefix}.epochs must be ≥ 1, got 0").into());
        }
        if self.batch_size == 0 {
            return Err(format!("{prefix}.batch_size must be ≥ 1, got 0").into());
        }
        Optimizer::check(prefix, self.lr, 0.0, self.weight_decay)?;
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "{prefix}.label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            )
            .into());
        }
        if let Some(dp) = &self.dp {
            dp.validate(&format!("{prefix}.dp"))?;
        }
        Ok(())
    }

    /// Checks that `model` can be trained with this config: DP-SGD's per-sample gradients are
    /// not defined through batch norm.
    pub fn check_model(&self, prefix: &str, model: &ImageModelConfig) -> Result<(), InputError> {
        if self.dp.is_some()
            && model.architecture == gaussmask_nn::image::Architecture::Cnn
            && model.batch_norm
        {
            return Err(format!(
                "{prefix}.dp: per-sample gradients are not defined through batch norm \
                 (set model.batch_norm = false)"
            )
            .into());
        }
        Ok(())
    }

    /// Optimizer steps in one epoch over `n` images: full batches only, the n mod b images
    /// left over in an epoch's order wait for the next shuffle.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.batch_size).max(1)
    }

    /// The generic trainer's settings for `epochs` epochs over `n` images, the batch order and
    /// every other stream of the trainer keyed by `seed`.
    pub fn fit_config(&self, n: usize, seed: u64) -> FitConfig {
        let steps = self.steps_per_epoch(n) * self.epochs;
        FitConfig {
            steps,
            batch_size: Some(self.batch_size.min(n)),
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: 0.0,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            min_lr: 0.0,
            masks_per_step: 1,
            shuffle_seed: seed,
            log_every: 1,
            dp: self.dp,
        }
    }
}

/// Normalized images with labels, on the host.
#[derive(Clone, Copy, Debug)]
pub struct ImageData<'a> {
    /// Images `[n, c·h·w]`, row-major.
    pub x: &'a [f32],
    /// Labels `[n]`.
    pub labels: &'a [u8],
    /// Image shape (c, h, w).
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl ImageData<'_> {
    /// Number of images.
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// The images at `rows` as a tensor `[k, c·h·w]`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> Tensor<2> {
        let dim = self.shape.iter().product::<usize>();
        let mut x = Vec::with_capacity(rows.len() * dim);
        for &i in rows {
            x.extend_from_slice(&self.x[i * dim..(i + 1) * dim]);
        }
        Tensor::from_data(TensorData::new(x, [rows.len(), dim]), device)
    }

    /// The images as the trainer's dataset: flattened inputs, the class indices as targets.
    pub fn dataset(&self) -> Dataset {
        Dataset {
            x: self.x.iter().map(|&v| f64::from(v)).collect(),
            y: self.labels.iter().map(|&l| f64::from(l)).collect(),
            n: self.n(),
            d: self.shape.iter().product(),
        }
    }
}

impl Trainable for MaskedNet {
    /// Cross-entropy of the logits of the masked images against the classes (`batch.y`), with
    /// the model's label smoothing: `burn::nn::loss::CrossEntropyLoss`.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let logits = self.forward_indexed(batch.x.clone(), &batch.rows);
        cross_entropy(self, logits, batch)
    }

    /// DP-SGD's clipped sum of the cross-entropy in one pass: [`clipped_gradient_sum`].
    fn clipped_gradient_sum(
        &self,
        batch: &Batch,
        clip: f64,
    ) -> Option<(Tensor<1>, GradientsParams)> {
        clipped_gradient_sum(self, batch, clip, |logits| {
            cross_entropy(self, logits, batch)
        })
    }
}

impl Trainable for MlpReplicas {
    /// Each replica's mean cross-entropy on its own block of `batch` ([`Batch::blocks`] = R),
    /// with the model's label smoothing, as `burn::nn::loss::CrossEntropyLoss` computes it for
    /// one net: `[R]`.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let r = self.replicas();
        assert_eq!(
            batch.blocks, r,
            "MlpReplicas trains each replica on its own rows (Fit::with_replica_rows)"
        );
        let [rows, d] = batch.x.dims();
        let n = rows / r;
        let logits = self.forward_replica_rows(batch.x.clone().reshape([r, n, d]), &batch.rows);
        let classes = logits.dims()[2];
        let log_p = log_softmax(logits.reshape([rows, classes]), 1);
        let targets = batch.y.clone().int().reshape([rows, 1]);
        // −Σ_k q_k ln p_k per sample, q the (smoothed) one-hot target, as Burn's loss forms it.
        let per_sample = if self.label_smoothing == 0.0 {
            log_p.gather(1, targets)
        } else {
            let alpha = self.label_smoothing as f32;
            let device = log_p.device();
            let one_hot = Tensor::<2>::zeros([rows, classes], &device).scatter(
                1,
                targets,
                Tensor::ones([rows, 1], &device),
                IndexingUpdateOp::Add,
            );
            let q = one_hot * (1.0 - alpha) + alpha / classes as f32;
            (log_p * q).sum_dim(1)
        };
        -per_sample.reshape([r, n]).mean_dim(1).reshape([r])
    }

    fn replicas_with_own_rows(&self) -> Option<usize> {
        Some(self.replicas())
    }
}

/// DP-SGD's clipped gradient sum ([`Trainable::clipped_gradient_sum`]) of `net` under
/// `mean_loss`, a mean over the batch of per-sample losses of its outputs, in one forward and
/// one backward pass, through zero probes on the layers' outputs
/// ([`MaskedNet::forward_probed`]): the samples' masks and dropout are their own and without
/// batch norm nothing else couples them, so row i of a probe's gradient, g_i, is sample i's
/// gradient at the layer's output.
/// - Dense layers, ghost clipping (Goodfellow 2015; Li, Tramèr, Liang, Hashimoto 2022):
///   sample i's weight gradient is the outer product a_i ⊗ g_i with the layer's input, so
///   its squared norm is ‖g_i‖²·(‖a_i‖² + 1) (the 1: the bias) and the clipped sum is one
///   product Aᵀ·(s ⊙ G), s_i = min(1, clip/‖∇L_i‖).
/// - Conv layers: sample i's weight gradient, kept (out × in·k·k per sample): one direct
///   correlation of g_i with the sample's input where `gaussmask-cpu-ops` runs the layer
///   (`gaussmask_cpu_ops::per_sample_weight_layer`), else from g_i and the layer's input
///   shifted by each kernel offset (`per_sample_conv_weight`).
///
/// `None` with batch norm, or a conv layer with stride, dilation, groups or uneven padding.
pub fn clipped_gradient_sum(
    net: &MaskedNet,
    batch: &Batch,
    clip: f64,
    mean_loss: impl FnOnce(Tensor<2>) -> Tensor<1>,
) -> Option<(Tensor<1>, GradientsParams)> {
    if !net.norms.is_empty() {
        return None;
    }
    let paddings = net
        .convs
        .iter()
        .map(conv_padding)
        .collect::<Option<Vec<_>>>()?;
    let b = batch.rows.len();
    let (logits, probes) = net.forward_probed(batch.x.clone(), &batch.rows);
    // The loss is a mean over the batch; the sum's gradient is each sample's own.
    let loss = mean_loss(logits) * b as f64;
    let grads = loss.backward();
    // Per sample: its squared gradient norm, summed over the layers ([b, 1]).
    let mut norm2: Vec<Tensor<2>> = Vec::new();
    let mut convs = Vec::with_capacity(net.convs.len());
    for ((conv, probe), padding) in net.convs.iter().zip(probes.convs).zip(paddings) {
        let g = probe.probe.grad(&grads)?;
        let out = g.dims()[1];
        // [b, out, in·k·k] and [b, out]
        let x = probe.input.inner();
        let fast = net
            .cpu_ops
            .then(|| per_sample_weight_layer(conv, x.clone(), g.clone()));
        let weight = fast
            .flatten()
            .unwrap_or_else(|| per_sample_conv_weight(x, g.clone(), conv.kernel_size, padding));
        let bias = g.sum_dims(&[2, 3]).reshape([b, out]);
        let per = weight.dims()[1] * weight.dims()[2];
        norm2.push(weight.clone().reshape([b, per]).square().sum_dim(1));
        norm2.push(bias.clone().square().sum_dim(1));
        convs.push((conv, weight, bias));
    }
    let mut dense = Vec::with_capacity(net.dense.len());
    for (layer, probe) in net.dense.iter().zip(probes.dense) {
        let g = probe.probe.grad(&grads)?;
        let a = probe.input.inner();
        let a2 = a.clone().square().sum_dim(1);
        let a2 = if layer.bias.is_some() { a2 + 1.0 } else { a2 };
        norm2.push(g.clone().square().sum_dim(1) * a2);
        dense.push((layer, a, g));
    }
    let norm2 = norm2.into_iter().reduce(|s, t| s + t)?;
    let norm = norm2.sqrt().clamp_min(f32::MIN_POSITIVE);
    let scale = (norm.recip() * clip).clamp_max(1.0);
    let mut out = GradientsParams::new();
    for (conv, weight, bias) in convs {
        let [_, o, per] = weight.dims();
        let clipped = (weight * scale.clone().reshape([b, 1, 1])).sum_dim(0);
        out.register::<4>(conv.weight.id, clipped.reshape(conv.weight.dims()));
        if let Some(param) = &conv.bias {
            let clipped = (bias * scale.clone()).sum_dim(0).reshape([o]);
            out.register::<1>(param.id, clipped);
        }
        debug_assert_eq!(o * per, conv.weight.dims().iter().product::<usize>());
    }
    for (layer, a, g) in dense {
        let g = g * scale.clone();
        if let Some(bias) = &layer.bias {
            out.register::<1>(bias.id, g.clone().sum_dim(0).reshape([g.dims()[1]]));
        }
        out.register::<2>(layer.weight.id, a.transpose().matmul(g));
    }
    Some((loss.detach(), out))
}

/// Each sample's weight gradient of a stride-1 conv layer, from its input `x` and the gradient
/// `g` at its output: g_i times sample i's unfolded input, one batched product. The input is
/// unfolded by stacking it shifted by every kernel offset (u, v): copies alone, where Burn's
/// `unfold4d` is a convolution with one-hot kernels.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`, `g`: `[b, o, h', w']`; returns `[b, o, c·kh·kw]`, the weight's order
fn per_sample_conv_weight(
    x: Tensor<4>,
    g: Tensor<4>,
    kernel: [usize; 2],
    padding: [usize; 2],
) -> Tensor<3> {
    let [b, c, _, _] = x.dims();
    let [_, o, oh, ow] = g.dims();
    let x = x.pad(
        [(padding[0], padding[0]), (padding[1], padding[1])],
        PadMode::Constant(0.0),
    );
    let g = g.reshape([b, o, oh * ow]);
    let mut shifted = Vec::with_capacity(kernel[0] * kernel[1]);
    for u in 0..kernel[0] {
        for v in 0..kernel[1] {
            shifted.push(
                x.clone()
                    .slice([0..b, 0..c, u..u + oh, v..v + ow])
                    .reshape([b, c, oh * ow]),
            );
        }
    }
    // [b, c, kh·kw, h'·w'] → [b, c·kh·kw, h'·w']: the unfolded input, built by copies alone.
    let unfolded = Tensor::stack::<4>(shifted, 2).reshape([b, c * kernel[0] * kernel[1], oh * ow]);
    g.matmul(unfolded.swap_dims(1, 2))
}

/// The padding of `conv` as per-sample gradients take it (`[rows, columns]`), where the layer is one
/// covers: stride 1, no dilation, one group, the same padding on opposite sides.
fn conv_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    if conv.stride != [1, 1] || conv.dilation != [1, 1] || conv.groups != 1 {
        return None;
    }
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// The mean cross-entropy of `logits` against `batch.y` with `net`'s label smoothing.
fn cross_entropy(net: &MaskedNet, logits: Tensor<2>, batch: &Batch) -> Tensor<1> {
    let smoothing = (net.label_smoothing > 0.0).then_some(net.label_smoothing as f32);
    CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init(&logits.device())
        .forward(logits, batch.y.clone().int())
}

/// How one classifier is trained: model, optimizer, mask strength, seed.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierSpec<'a> {
    /// Model shape.
    pub model: &'a ImageModelConfig,
    /// Optimizer, batches, schedule.
    pub train: &'a ClassifyConfig,
    /// κ of the input mask (0: clean training).
    pub kappa: f64,
    /// Seed of the initial weights, the mask, the batch order and the device's draws.
    pub seed: u64,
}

impl ClassifierSpec<'_> {
    /// The untrained model for images of `shape` and `classes` classes.
    pub fn init(&self, shape: [usize; 3], classes: usize, device: &Device) -> MaskedNet {
        self.model
            .init(shape, classes, self.kappa, self.seed, device)
            .with_label_smoothing(self.train.label_smoothing)
    }

    /// A training run at step 0 on `data` (see [`ImageData::dataset`]), from `model` (e.g.
    /// [`ClassifierSpec::init`]) on the autodiff `device`.
    ///
    /// # Errors
    /// Settings that do not fit the data (a batch larger than the images).
    pub fn fit<'a>(
        &self,
        model: MaskedNet,
        data: &'a Dataset,
        device: &Device,
    ) -> Result<Fit<'a, MaskedNet>, TrainError> {
        Fit::new(
            model,
            data,
            &self.train.fit_config(data.n, self.seed),
            device,
        )
    }

    /// The run saved by [`Fit::checkpoint`], continued; `model` is any model of this spec's
    /// shape (its values are replaced).
    ///
    /// # Errors
    /// A one-line message when the bytes are not a checkpoint of this run.
    pub fn resume<'a>(
        &self,
        model: MaskedNet,
        bytes: &[u8],
        data: &'a Dataset,
        device: &Device,
    ) -> Result<Fit<'a, MaskedNet>, StateError> {
        let config = self.train.fit_config(data.n, self.seed);
        Fit::resume(model, bytes, data, &config, device)
    }
}

/// R classifiers of one MLP architecture and training config, trained as one model
/// ([`MlpReplicas`]), each on its own rows of one dataset: replica r is the classifier of
/// [`ClassifierSpec`] { kappa: `replicas[r].kappa`, seed: `replicas[r].seed` } trained on the
/// rows `rows[r]` alone (same initial weights, batches and host-stream masks; dropout draws
/// differ).
#[derive(Clone, Debug)]
pub struct ClassifierReplicas<'a> {
    /// Model shape (an MLP).
    pub model: &'a ImageModelConfig,
    /// Optimizer, batches, schedule (no DP-SGD).
    pub train: &'a ClassifyConfig,
    /// Each replica's κ and seed.
    pub replicas: Vec<Replica>,
    /// Each replica's rows of the dataset (all of one size).
    pub rows: Vec<Vec<usize>>,
}

impl ClassifierReplicas<'_> {
    /// Replica r's spec.
    pub fn spec(&self, r: usize) -> ClassifierSpec<'_> {
        ClassifierSpec {
            model: self.model,
            train: self.train,
            kappa: self.replicas[r].kappa,
            seed: self.replicas[r].seed,
        }
    }

    /// The untrained replicas for images of `shape` and `classes` classes.
    pub fn init(&self, shape: [usize; 3], classes: usize, device: &Device) -> MlpReplicas {
        let nets: Vec<MaskedNet> = (0..self.replicas.len())
            .map(|r| self.spec(r).init(shape, classes, device))
            .collect();
        MlpReplicas::stack(&nets)
    }

    /// A training run at step 0 on `data`'s rows ([`ClassifierReplicas::rows`]), from `model`
    /// (e.g. [`ClassifierReplicas::init`]) on the autodiff `device`.
    ///
    /// # Errors
    /// DP-SGD, or rows that do not fit the data and the batch size
    /// ([`Fit::with_replica_rows`]).
    pub fn fit<'a>(
        &self,
        model: MlpReplicas,
        data: &'a Dataset,
        device: &Device,
    ) -> Result<Fit<'a, MlpReplicas>, TrainError> {
        let n = self.rows.first().map_or(0, Vec::len);
        let config = self.train.fit_config(n, self.replicas[0].seed);
        let own = self
            .rows
            .iter()
            .zip(&self.replicas)
            .map(|(rows, r)| (rows.clone(), r.seed))
            .collect();
        Fit::new(model, data, &config, device)?.with_replica_rows(own)
    }

    /// The run saved by [`Fit::checkpoint`], continued; `model` is any model of these replicas'
    /// shape (its values are replaced).
    ///
    /// # Errors
    /// A one-line message when the bytes are not a checkpoint of this run.
    pub fn resume<'a>(
        &self,
        model: MlpReplicas,
        bytes: &[u8],
        data: &'a Dataset,
        device: &Device,
    ) -> Result<Fit<'a, MlpReplicas>, StateError> {
        self.fit(model, data, device)
            .map_err(StateError::Train)?
            .restore(bytes)
    }
}

/// Trains a classifier of `spec` on `data` for its epochs, from scratch; `tick` after each step.
///
/// # Errors
/// As [`Fit::advance`].
pub fn train_classifier(
    spec: ClassifierSpec<'_>,
    model: MaskedNet,
    data: &Dataset,
    device: &Device,
    mut tick: impl FnMut(),
) -> Result<MaskedNet, TrainError> {
    let mut run = spec.fit(model, data, device)?;
    while run.step() < run.steps() {
        run.advance()?;
        tick();
    }
    Ok(run.into_model())
}

/// A model's float parameters and buffers as (shape, values) pairs, in visiting order.
pub type Parameters = Vec<(Vec<usize>, Vec<f64>)>;

/// Every float parameter of `model` (batch-norm running statistics included) as (shape,
/// values), in visiting order.
pub fn parameters<M: Module>(model: &M) -> Parameters {
    let mut out = Vec::new();
    // Through `valid()`, which folds in the last update of running statistics first.
    model.valid().visit(&mut Collect(&mut out));
    out
}

/// `model` with its float parameters replaced by `values` (as [`parameters`] lists them).
///
/// # Errors
/// Counts or shapes differ.
pub fn with_parameters<M: Module>(model: M, values: Parameters) -> Result<M, StateError> {
    let mut values: VecDeque<_> = values.into();
    let mut load = Load {
        values: &mut values,
        error: None,
    };
    let model = model.map(&mut load);
    match load.error {
        Some(e) => Err(StateError::Mismatch(e)),
        None if !values.is_empty() => Err(StateError::Mismatch(
            "more values than the model has parameters".into(),
        )),
        None => Ok(model),
    }
}

/// `model`'s Burn record (weights, batch-norm statistics, mask streams) as bytes.
///
/// # Errors
/// The record cannot be encoded.
pub fn model_bytes<M: Module>(model: &M) -> Result<Vec<u8>, StateError> {
    // Through `valid()`, which folds in the last update of running statistics first.
    model
        .valid()
        .into_record()
        .into_bytes()
        .map(|bytes| bytes.to_vec())
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// `model` with the record saved by [`model_bytes`] loaded.
///
/// # Errors
/// The bytes are not a record of a model of this shape.
pub fn load_model_bytes<M: Module>(model: M, bytes: &[u8]) -> Result<M, StateError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| StateError::Mismatch(format!("not a model checkpoint: {e}")))?;
    model
        .try_load_record(record)
        .map_err(|e| StateError::Mismatch(format!("a model checkpoint of another shape: {e}")))
}

struct Collect<'a>(&'a mut Parameters);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        self.0.push((t.dims().to_vec(), to_f64(t)));
    }
}

struct Load<'a> {
    values: &'a mut VecDeque<(Vec<usize>, Vec<f64>)>,
    error: Option<String>,
}

impl ModuleMapper for Load<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((shape, values)) = self.values.pop_front() else {
            self.error = Some("fewer values than the model has parameters".into());
            return param;
        };
        if shape != param.dims().to_vec() {
            self.error = Some(format!(
                "a parameter of shape {shape:?} where the model has {:?}",
                param.dims()
            ));
            return param;
        }
        let grad = param.is_require_grad();
        param.map(|t| {
            let device = t.device();
            let dims: [usize; D] = t.dims();
            Tensor::from_data(TensorData::new(values, dims), (&device, t.dtype()))
                .set_require_grad(grad)
        })
    }
}

/// Softmax posteriors of `model` on every image of `data`, in batches of `batch`; pass the
/// evaluation model (`valid()`: mask off, running statistics).
///
/// # Shapes
/// - returns `[n, classes]` row-major
pub fn posteriors(
    model: &MaskedNet,
    data: ImageData<'_>,
    batch: usize,
    device: &Device,
) -> Vec<f32> {
    over_batches(model, data, batch, device, |logits| {
        to_f64(softmax(logits, 1))
            .into_iter()
            .map(|v| v as f32)
            .collect()
    })
}

/// Log-softmax posteriors in f64, as [`posteriors`] gives the softmax: what a membership
/// attack's logit-scaled confidence needs far in the tails, where 1 − p rounds to 0.
///
/// # Shapes
/// - returns `[n, classes]` row-major
pub fn log_posteriors(
    model: &MaskedNet,
    data: ImageData<'_>,
    batch: usize,
    device: &Device,
) -> Vec<f64> {
    over_batches(model, data, batch, device, |logits| {
        to_f64(burn::tensor::activation::log_softmax(logits, 1))
    })
}

/// `f` of the logits of every batch of `batch` images of `data`, concatenated.
fn over_batches<T>(
    model: &MaskedNet,
    data: ImageData<'_>,
    batch: usize,
    device: &Device,
    f: impl Fn(Tensor<2>) -> Vec<T>,
) -> Vec<T> {
    let n = data.n();
    let mut out = Vec::with_capacity(n * data.classes);
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(batch.max(1)) {
        let x = data.batch(chunk, device);
        out.extend(f(model.forward_indexed(x, chunk)));
    }
    out
}

/// Fraction of rows whose largest posterior is at the true label.
pub fn accuracy(posteriors: &[f32], labels: &[u8], classes: usize) -> f64 {
    let hits = posteriors
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(p, l)| {
            let best = p
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (k, &v)| if v > acc.1 { (k, v) } else { acc },
                )
                .0;
            best == **l as usize
        })
        .count();
    hits as f64 / labels.len().max(1) as f64
}
