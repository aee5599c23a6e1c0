//! Minibatch training of the image classifiers ([`gaussmask_nn::image::ImageNet`]) under the
//! input mask: Adam, AdamW or SGD, weight decay, a constant or cosine learning rate, optional
//! label smoothing; checkpoints that hold everything a resumed run needs (weights, optimizer
//! moments, both random streams, the step), so that a resumed run ends bit-identical to an
//! uninterrupted one on the same CPU backend.

use std::collections::VecDeque;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use gaussmask_nn::image::{ImageModelConfig, ImageNet, TrainNoise};
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use serde::{Deserialize, Serialize};

/// The optimizer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifyOptimizer {
    /// Adam; weight decay is an L2 term added to the gradient (PyTorch's `Adam(weight_decay)`).
    #[default]
    Adam,
    /// AdamW: weight decay decoupled from the gradient, w ← w − lr·λ·w.
    Adamw,
    /// Plain SGD; weight decay as an L2 term.
    Sgd,
}

/// The learning-rate schedule over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// lr at every step.
    #[default]
    Constant,
    /// lr · ½(1 + cos(π t/T)) at step t of T.
    Cosine,
}

/// How a classifier is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Passes over the training set (experiments that train to several lengths set it).
    #[serde(default)]
    pub epochs: usize,
    /// Minibatch size (the last batch of an epoch holds the remainder).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Optimizer.
    #[serde(default)]
    pub optimizer: ClassifyOptimizer,
    /// Weight decay λ (see [`ClassifyOptimizer`] for how each optimizer applies it).
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

/// DP-SGD (Abadi et al. 2016): each sample's gradient is clipped to norm ≤ `clip`, the clipped
/// gradients are summed, Gaussian noise of std `noise_multiplier · clip` is added to every
/// coordinate, and the sum is divided by the batch size. Batches are the shuffled fixed-size
/// batches of ordinary training; the accountant treats them as Poisson samples of rate
/// batch/n, the usual approximation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSgd {
    /// Clipping norm C.
    pub clip: f64,
    /// Noise multiplier σ.
    pub noise_multiplier: f64,
}

impl ClassifyConfig {
    /// Checks every field; the error names it (under `prefix`, e.g. `train`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.epochs == 0 {
            return Err(format!("{prefix}.epochs must be ≥ 1, got 0"));
        }
        if self.batch_size == 0 {
            return Err(format!("{prefix}.batch_size must be ≥ 1, got 0"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("{prefix}.lr must be a number > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "{prefix}.weight_decay must be a number ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "{prefix}.label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if let Some(dp) = &self.dp {
            if !(dp.clip.is_finite() && dp.clip > 0.0) {
                return Err(format!(
                    "{prefix}.dp.clip must be a number > 0, got {}",
                    dp.clip
                ));
            }
            if !(dp.noise_multiplier.is_finite() && dp.noise_multiplier >= 0.0) {
                return Err(format!(
                    "{prefix}.dp.noise_multiplier must be a number ≥ 0, got {}",
                    dp.noise_multiplier
                ));
            }
        }
        Ok(())
    }

    /// Checks that `model` can be trained with this config: DP-SGD's per-sample gradients are
    /// not defined through batch norm.
    pub fn check_model(&self, prefix: &str, model: &ImageModelConfig) -> Result<(), String> {
        if self.dp.is_some()
            && model.architecture == gaussmask_nn::image::Architecture::Cnn
            && model.batch_norm
        {
            return Err(format!(
                "{prefix}.dp: per-sample gradients are not defined through batch norm \
                 (set model.batch_norm = false)"
            ));
        }
        Ok(())
    }

    /// Optimizer steps in one epoch over `n` images.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size)
    }

    /// The learning rate of step `t` of `total`.
    pub fn lr_at(&self, t: usize, total: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos())
            }
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
}

/// Everything a run needs to continue: weights, optimizer moments, random streams, step.
#[derive(Debug)]
pub struct TrainState {
    /// The model (on the autodiff device while training).
    pub model: ImageNet,
    /// Adam's first and second moments per trainable parameter, in visiting order, flattened;
    /// empty before the first step and for SGD.
    moments: Vec<(Tensor<1>, Tensor<1>)>,
    /// Optimizer steps done.
    pub step: usize,
    /// Source of masks and dropout.
    noise: Stream,
}

impl TrainState {
    /// A fresh run: initial weights and streams of `seed`.
    pub fn new(
        config: &ImageModelConfig,
        shape: [usize; 3],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self {
            model: config.init(shape, classes, seed, device),
            moments: Vec::new(),
            step: 0,
            noise: Stream::new(seed, tag::MASK),
        }
    }

    /// The state as bytes: a little-endian u64 header length, a JSON header (step, stream
    /// state, tensor shapes), then every tensor's values as little-endian f64 (exact for f32
    /// and f64 devices alike).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tensors = Vec::new();
        self.model.visit(&mut Collect(&mut tensors));
        let n_params = tensors.len();
        for (m, v) in &self.moments {
            tensors.push(host(m.clone()));
            tensors.push(host(v.clone()));
        }
        let header = CheckpointHeader {
            format: CHECKPOINT_FORMAT.into(),
            step: self.step,
            noise: self.noise.state(),
            params: n_params,
            shapes: tensors.iter().map(|t| t.0.clone()).collect(),
        };
        let json = serde_json::to_vec(&header).expect("header encodes");
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        for (_, values) in &tensors {
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        bytes
    }

    /// The state saved by [`TrainState::to_bytes`], for a model of `config` (its shapes must
    /// match).
    pub fn from_bytes(
        bytes: &[u8],
        config: &ImageModelConfig,
        shape: [usize; 3],
        classes: usize,
        device: &Device,
    ) -> Result<Self, String> {
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or("truncated checkpoint")?;
        let json = bytes
            .get(8..8usize.saturating_add(len))
            .ok_or("truncated checkpoint header")?;
        let header: CheckpointHeader =
            serde_json::from_slice(json).map_err(|e| format!("bad checkpoint header: {e}"))?;
        if header.format != CHECKPOINT_FORMAT {
            return Err(format!("unknown checkpoint format '{}'", header.format));
        }
        let mut rest = &bytes[8 + len..];
        let mut tensors = VecDeque::new();
        for shape in &header.shapes {
            let count: usize = shape.iter().product();
            let raw = count
                .checked_mul(8)
                .and_then(|len| rest.get(..len))
                .ok_or("truncated checkpoint tensors")?;
            let values: Vec<f64> = raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            tensors.push_back((shape.clone(), values));
            rest = &rest[raw.len()..];
        }
        if !rest.is_empty() {
            return Err("checkpoint has trailing bytes".into());
        }
        if header.params > tensors.len() || !(tensors.len() - header.params).is_multiple_of(2) {
            return Err("checkpoint does not match the model's parameters".into());
        }
        let params: Vec<_> = tensors.drain(..header.params).collect();
        let model = with_parameters(config.init(shape, classes, 0, device), params)
            .map_err(|e| format!("checkpoint does not match the model: {e}"))?;
        let mut moments = Vec::new();
        while let (Some(m), Some(v)) = (tensors.pop_front(), tensors.pop_front()) {
            let [a, b] = [m, v].map(|(s, values)| {
                let count = s.iter().product::<usize>();
                Tensor::<1>::from_data(TensorData::new(values, [count]), device).inner()
            });
            moments.push((a, b));
        }
        Ok(Self {
            model,
            moments,
            step: header.step,
            noise: Stream::from_state(header.noise),
        })
    }
}

impl TrainState {
    /// A state whose model has the parameter `values` (as [`parameters`] lists them), with
    /// fresh optimizer moments and the streams of `seed`: a FedAvg client's start of round.
    ///
    /// # Errors
    /// The values do not fit a model of `config`.
    pub fn from_parameters(
        values: Parameters,
        config: &ImageModelConfig,
        shape: [usize; 3],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, String> {
        Ok(Self {
            model: with_parameters(config.init(shape, classes, seed, device), values)?,
            moments: Vec::new(),
            step: 0,
            noise: Stream::new(seed, tag::MASK),
        })
    }
}

/// A model's float parameters as (shape, values) pairs, in visiting order.
pub type Parameters = Vec<(Vec<usize>, Vec<f64>)>;

/// Every float parameter of `model` (batch-norm statistics included) as (shape, values), in
/// visiting order.
pub fn parameters(model: &ImageNet) -> Parameters {
    let mut out = Vec::new();
    model.visit(&mut Collect(&mut out));
    out
}

/// `model` with its float parameters replaced by `values` (as [`parameters`] lists them).
///
/// # Errors
/// Counts or shapes differ.
pub fn with_parameters(model: ImageNet, values: Parameters) -> Result<ImageNet, String> {
    let mut values: VecDeque<_> = values.into();
    let mut load = Load {
        values: &mut values,
        error: None,
    };
    let model = model.map(&mut load);
    match load.error {
        Some(e) => Err(e),
        None if !values.is_empty() => Err("more values than the model has parameters".into()),
        None => Ok(model),
    }
}

const CHECKPOINT_FORMAT: &str = "gaussmask-classifier-1";

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    format: String,
    step: usize,
    noise: [u64; 6],
    params: usize,
    shapes: Vec<Vec<usize>>,
}

fn host<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f64>) {
    (t.dims().to_vec(), to_f64(t))
}

struct Collect<'a>(&'a mut Vec<(Vec<usize>, Vec<f64>)>);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(host(param.val()));
    }
}

struct Load<'a> {
    values: &'a mut VecDeque<(Vec<usize>, Vec<f64>)>,
    error: Option<String>,
}

impl ModuleMapper for Load<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((shape, values)) = self.values.pop_front() else {
            self.error = Some("checkpoint has fewer parameters than the model".into());
            return param;
        };
        if shape != param.dims().to_vec() {
            self.error = Some(format!(
                "checkpoint parameter of shape {shape:?} where the model has {:?}",
                param.dims()
            ));
            return param;
        }
        let grad = param.is_require_grad();
        param.map(|t| {
            let device = t.device();
            let dims: [usize; D] = t.dims();
            Tensor::from_data(TensorData::new(values, dims), &device).set_require_grad(grad)
        })
    }
}

/// Where a step's gradients come from.
enum GradSource<'a> {
    /// Autodiff of the batch loss.
    Autodiff(&'a Gradients),
    /// Flattened gradients per trainable parameter, in visiting order (DP-SGD).
    Flat(Vec<Tensor<1>>),
}

/// Each trainable parameter's gradient, flattened, in visiting order.
struct CollectGrads<'a> {
    grads: &'a Gradients,
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad()
            && let Some(g) = param.val().grad(self.grads)
        {
            let count = g.dims().iter().product::<usize>();
            self.out.push(g.reshape([count]));
        }
    }
}

/// One Adam/AdamW/SGD step over every trainable parameter, in visiting order.
struct Step<'a> {
    grads: GradSource<'a>,
    moments: &'a mut Vec<(Tensor<1>, Tensor<1>)>,
    index: usize,
    lr: f64,
    config: &'a ClassifyConfig,
    /// Bias corrections 1 − β₁ᵗ, 1 − β₂ᵗ.
    correction: (f64, f64),
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.is_require_grad() {
            return param;
        }
        let grad = match &self.grads {
            GradSource::Autodiff(grads) => {
                let Some(g) = param.val().grad(grads) else {
                    return param;
                };
                let count = g.dims().iter().product::<usize>();
                g.reshape([count])
            }
            GradSource::Flat(flat) => flat[self.index].clone(),
        };
        let (lr, config, correction) = (self.lr, self.config, self.correction);
        let index = self.index;
        self.index += 1;
        let moments = &mut *self.moments;
        param.map(|t| {
            let dims = t.dims();
            let count = dims.iter().product::<usize>();
            let w = t.inner().reshape([count]);
            let mut g = grad;
            let decay = config.weight_decay;
            if decay > 0.0 && config.optimizer != ClassifyOptimizer::Adamw {
                g = g + w.clone() * decay;
            }
            let update = match config.optimizer {
                ClassifyOptimizer::Sgd => g * lr,
                ClassifyOptimizer::Adam | ClassifyOptimizer::Adamw => {
                    if moments.len() == index {
                        moments.push((g.zeros_like(), g.zeros_like()));
                    }
                    let (m, v) = moments[index].clone();
                    let m = m * BETA1 + g.clone() * (1.0 - BETA1);
                    let v = v * BETA2 + g.powi_scalar(2) * (1.0 - BETA2);
                    let step = (m.clone() / correction.0)
                        / ((v.clone() / correction.1).sqrt() + ADAM_EPS)
                        * lr;
                    moments[index] = (m, v);
                    if config.optimizer == ClassifyOptimizer::Adamw && decay > 0.0 {
                        step + w.clone() * (lr * decay)
                    } else {
                        step
                    }
                }
            };
            (w - update).reshape(dims).autodiff().require_grad()
        })
    }
}

/// Cross-entropy of `logits` against `labels`, with label smoothing ε: the mean over the batch
/// of −Σ_k t_k log softmax(logits)_k, t = (1 − ε)·one-hot + ε/K.
///
/// # Shapes
/// - `logits`: `[b, K]`; returns a one-element tensor
pub fn cross_entropy(logits: Tensor<2>, labels: &[u8], smoothing: f64) -> Tensor<1> {
    let [b, k] = logits.dims();
    let off = smoothing / k as f64;
    let mut targets = vec![off; b * k];
    for (i, &label) in labels.iter().enumerate() {
        targets[i * k + label as usize] += 1.0 - smoothing;
    }
    let targets = from_f64(targets, [b, k], &logits.device());
    (log_softmax(logits, 1) * targets).sum().neg() / b as f64
}

/// What [`train_classifier`] tells its observer after each optimizer step.
pub struct StepInfo<'a> {
    /// The state after the step.
    pub state: &'a TrainState,
    /// The step's minibatch loss (masked inputs).
    pub loss: f64,
    /// Epoch the step belonged to (0-based).
    pub epoch: usize,
    /// Whether the step finished its epoch.
    pub epoch_end: bool,
}

/// What the observer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop now and return the state as it is (the observer has saved it).
    Stop,
}

/// Why training ended early.
#[derive(Debug)]
pub enum ClassifyError {
    /// The loss became NaN or infinite.
    Diverged {
        /// The step.
        step: usize,
        /// The value.
        value: f64,
    },
}

impl std::fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassifyError::Diverged { step, value } => write!(
                f,
                "training diverged at step {step}: loss {value} (lower train.lr)"
            ),
        }
    }
}

impl std::error::Error for ClassifyError {}

/// How one classifier is trained: model, optimizer, mask strength, seed.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierSpec<'a> {
    /// Model shape.
    pub model: &'a ImageModelConfig,
    /// Optimizer, batches, schedule.
    pub train: &'a ClassifyConfig,
    /// κ of the input mask (0: clean training).
    pub kappa: f64,
    /// Seed of the batch order (the state holds the rest).
    pub seed: u64,
}

/// Trains from `state` (fresh, or restored from a checkpoint) until `spec.train.epochs` epochs
/// are done or `observe` says stop. `device` is the autodiff device the state lives on.
///
/// Epoch e visits the images in the order of a permutation drawn from the seed's batch stream
/// for e alone, so a run resumed at any step sees the batches the uninterrupted run saw.
///
/// # Errors
/// [`ClassifyError::Diverged`] when the loss stops being finite.
pub fn train_classifier(
    spec: ClassifierSpec<'_>,
    data: ImageData<'_>,
    mut state: TrainState,
    device: &Device,
    mut observe: impl FnMut(StepInfo<'_>) -> Flow,
) -> Result<TrainState, ClassifyError> {
    let n = data.n();
    let per_epoch = spec.train.steps_per_epoch(n);
    let total = per_epoch * spec.train.epochs;
    let batch_stream = Stream::new(spec.seed, tag::BATCH);
    let mut order: Vec<usize> = Vec::new();
    let mut order_epoch = usize::MAX;
    while state.step < total {
        let (epoch, within) = (state.step / per_epoch, state.step % per_epoch);
        if order_epoch != epoch {
            order = (0..n).collect();
            batch_stream.substream(epoch as u64).shuffle(&mut order);
            order_epoch = epoch;
        }
        let rows =
            &order[within * spec.train.batch_size..((within + 1) * spec.train.batch_size).min(n)];
        let x = data.batch(rows, device);
        let labels: Vec<u8> = rows.iter().map(|&i| data.labels[i]).collect();
        let autodiff_grads;
        let (value, grads, stats) = match spec.train.dp {
            None => {
                let noise = TrainNoise {
                    kappa: spec.kappa,
                    stream: &mut state.noise,
                };
                let (logits, stats) = state.model.forward(x, data.shape, spec.model, Some(noise));
                let loss = cross_entropy(logits, &labels, spec.train.label_smoothing);
                let value = loss.clone().inner().into_scalar::<f64>();
                autodiff_grads = loss.backward();
                (value, GradSource::Autodiff(&autodiff_grads), stats)
            }
            Some(dp) => {
                let (value, flat) = dp_gradients(&mut state, spec, data, rows, dp, device);
                (value, GradSource::Flat(flat), Vec::new())
            }
        };
        if !value.is_finite() {
            return Err(ClassifyError::Diverged {
                step: state.step,
                value,
            });
        }
        let t = state.step + 1;
        let mut step = Step {
            grads,
            moments: &mut state.moments,
            index: 0,
            lr: spec.train.lr_at(state.step, total),
            config: spec.train,
            correction: (1.0 - BETA1.powi(t as i32), 1.0 - BETA2.powi(t as i32)),
        };
        let spatial = data.shape[1] * data.shape[2];
        let model = state.model.map(&mut step);
        state.model = model.update_running_stats(stats, rows.len() * spatial);
        state.step = t;
        let info = StepInfo {
            state: &state,
            loss: value,
            epoch,
            epoch_end: within + 1 == per_epoch,
        };
        if observe(info) == Flow::Stop {
            break;
        }
    }
    Ok(state)
}

/// DP-SGD's gradient of one batch: per-sample gradients (each sample's own mask), each clipped
/// to norm ≤ C, summed, plus N(0, (σC)²) noise per coordinate, over the batch size. Returns the
/// mean per-sample loss too.
fn dp_gradients(
    state: &mut TrainState,
    spec: ClassifierSpec<'_>,
    data: ImageData<'_>,
    rows: &[usize],
    dp: DpSgd,
    device: &Device,
) -> (f64, Vec<Tensor<1>>) {
    let mut sum: Vec<Tensor<1>> = Vec::new();
    let mut loss_sum = 0.0;
    for &row in rows {
        let noise = TrainNoise {
            kappa: spec.kappa,
            stream: &mut state.noise,
        };
        let x = data.batch(&[row], device);
        let (logits, _) = state.model.forward(x, data.shape, spec.model, Some(noise));
        let loss = cross_entropy(logits, &[data.labels[row]], spec.train.label_smoothing);
        loss_sum += loss.clone().inner().into_scalar::<f64>();
        let grads = loss.backward();
        let mut collect = CollectGrads {
            grads: &grads,
            out: Vec::new(),
        };
        state.model.visit(&mut collect);
        let norm = collect
            .out
            .iter()
            .map(|g| g.clone().powi_scalar(2).sum().into_scalar::<f64>())
            .sum::<f64>()
            .sqrt();
        let scale = (dp.clip / norm.max(f64::MIN_POSITIVE)).min(1.0);
        if sum.is_empty() {
            sum = collect.out.into_iter().map(|g| g * scale).collect();
        } else {
            for (acc, g) in sum.iter_mut().zip(collect.out) {
                *acc = acc.clone() + g * scale;
            }
        }
    }
    let std = dp.noise_multiplier * dp.clip;
    let b = rows.len() as f64;
    let noisy = sum
        .into_iter()
        .map(|acc| {
            let count = acc.dims()[0];
            let z: Vec<f64> = (0..count).map(|_| std * state.noise.normal()).collect();
            let device = acc.device();
            (acc + from_f64(z, [count], &device)) / b
        })
        .collect();
    (loss_sum / b, noisy)
}

/// Softmax posteriors of `model` on every image of `data`, mask off, in batches of `batch`.
///
/// # Shapes
/// - returns `[n, classes]` row-major
pub fn posteriors(
    model: &ImageNet,
    config: &ImageModelConfig,
    data: ImageData<'_>,
    batch: usize,
    device: &Device,
) -> Vec<f32> {
    let n = data.n();
    let mut out = Vec::with_capacity(n * data.classes);
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(batch.max(1)) {
        let x = data.batch(chunk, device);
        let (logits, _) = model.forward(x, data.shape, config, None);
        out.extend(to_f64(softmax(logits, 1)).into_iter().map(|v| v as f32));
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
