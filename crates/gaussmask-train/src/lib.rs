//! Training loops for masked networks: objectives, optimizers, full-batch GD, minibatch SGD and
//! Adam, with the clean training loss logged as the paper plots it.
//!
//! - [`fit`]: one autodiff loop for any Burn model with an input mask ([`fit::Trainable`]).
//! - [`train_two_layer`]: the paper's replica sweeps, with the fused fast paths.
//! - [`train_deep`], [`classify`]: deeper MLPs and image classifiers.
//! - [`reference`]: the two-layer loss and gradient in scalar f64, for host-side loops.

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use gaussmask_core::InputError;
use gaussmask_data::Dataset;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io;
use gaussmask_nn::{MaskNoise, Replica, TwoLayerRelu, TwoLayerReluConfig};
use serde::{Deserialize, Serialize};

pub use fit::Optimizer;

mod autodiff;
pub mod classify;
mod deep;
pub mod fit;
mod fused;
mod host;
pub mod reference;

pub use deep::{check_deep, train_deep, train_deep_grouped};

/// How the gradient step is computed. Every engine draws the same masks and produces the
/// same trajectory up to floating-point rounding (tested to 1e-5 relative in f64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// `host` on CPU backends and `fused` on GPU backends where they apply (objective `masked`
    /// or `clean`, optimizer `gd`), `autodiff` otherwise.
    #[default]
    Auto,
    /// Burn's autodiff and optimizers: every objective and optimizer; the reference.
    Autodiff,
    /// Hand-derived gradient of the masked loss as Burn tensor ops on the run's device
    /// (no autodiff graph): the GPU path.
    Fused,
    /// Hand-derived gradient on the host with gemm matmuls, masks drawn straight into the
    /// masked inputs, replicas (or, for one replica, row blocks) on all cores: the CPU path.
    Host,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Autodiff => "autodiff",
            Engine::Fused => "fused",
            Engine::Host => "host",
        })
    }
}

/// What the gradient step differentiates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// ½ Σ (f(W, x ⊙ c) − y)² with one fresh mask per step (the paper's algorithm).
    #[default]
    Masked,
    /// The average of `masks_per_step` masked losses, each on its own fresh mask.
    MaskedK,
    /// The proxy objective ½ Σ [(f̂ − y)² + R] of SPEC §3(B), in closed form: no sampling.
    Proxy,
    /// The exact expected loss E_c ½ Σ (f(W, x ⊙ c) − y)² of SPEC §3(A), in closed form.
    ExpectedExact,
    /// ½ Σ (f(W, x) − y)²: no mask.
    Clean,
}

/// Optimizer and schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of gradient steps.
    pub steps: usize,
    /// Learning rate η of the first layer.
    pub lr: f64,
    /// Learning rate of the output signs when they are trained; defaults to `lr`.
    #[serde(default)]
    pub lr_output: Option<f64>,
    /// Update rule: `gd` (with `momentum`) or `adam`.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Heavy-ball momentum of GD (0 = none).
    #[serde(default)]
    pub momentum: f64,
    /// Minibatch size; `None` is full-batch.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Objective differentiated at each step.
    #[serde(default)]
    pub objective: Objective,
    /// Log the clean (and masked) loss every this many steps; the last step is always logged.
    #[serde(default = "one")]
    pub log_every: usize,
    /// Samples per chunk of the `expected-exact` objective (memory grows as chunk·m²).
    #[serde(default = "default_exact_chunk")]
    pub exact_chunk: usize,
    /// Masks averaged per step by the `masked-k` objective.
    #[serde(default = "one")]
    pub masks_per_step: usize,
    /// Seed of the minibatch order, which all replicas share (so they see the same batches
    /// whatever their own seeds and whichever replicas train together).
    #[serde(default)]
    pub shuffle_seed: u64,
    /// How gradients are computed (same results, different speed).
    #[serde(default)]
    pub engine: Engine,
    /// Every this many steps (and at the last), the log record carries the weights W_k for NTK
    /// diagnostics; 0 = never.
    #[serde(default)]
    pub diagnostics_every: usize,
}

fn one() -> usize {
    1
}

fn default_exact_chunk() -> usize {
    32
}

impl TrainConfig {
    /// Checks every field; the error names the offending one.
    pub fn validate(&self, n: usize) -> Result<(), InputError> {
        if self.steps == 0 {
            return Err("train.steps must be ≥ 1, got 0".into());
        }
        Optimizer::check("train", self.lr, self.momentum, 0.0)?;
        if self.optimizer == Optimizer::AdamW {
            return Err(
                "train.optimizer = \"adamw\" has nothing to decouple here (the two-layer \
                 engines have no weight decay): use \"gd\" or \"adam\""
                    .into(),
            );
        }
        if let Some(lr) = self.lr_output
            && !(lr.is_finite() && lr >= 0.0)
        {
            return Err(format!("train.lr_output must be a finite number ≥ 0, got {lr}").into());
        }
        if let Some(b) = self.batch_size
            && !(1..=n).contains(&b)
        {
            return Err(format!("train.batch_size must lie in 1..={n}, got {b}").into());
        }
        if self.exact_chunk == 0 {
            return Err("train.exact_chunk must be ≥ 1, got 0".into());
        }
        if self.masks_per_step == 0 {
            return Err("train.masks_per_step must be ≥ 1, got 0".into());
        }
        if self.log_every == 0 {
            return Err("train.log_every must be ≥ 1, got 0".into());
        }
        if matches!(self.engine, Engine::Fused | Engine::Host) && !self.fusable() {
            return Err(format!(
                "train.engine = \"{}\" runs objective \"masked\" or \"clean\" with optimizer \
                 \"gd\" only; use engine \"autodiff\" (or \"auto\") for objective {:?} with \
                 optimizer {:?}",
                self.engine, self.objective, self.optimizer
            )
            .into());
        }
        Ok(())
    }

    /// Whether the fused engines cover this objective and optimizer.
    fn fusable(&self) -> bool {
        matches!(self.objective, Objective::Masked | Objective::Clean)
            && self.optimizer == Optimizer::Gd
    }

    /// The engine `auto` resolves to on a CPU (`gpu` false) or GPU device.
    pub fn resolved_engine(&self, gpu: bool) -> Engine {
        match self.engine {
            Engine::Auto if !self.fusable() => Engine::Autodiff,
            Engine::Auto if gpu => Engine::Fused,
            Engine::Auto => Engine::Host,
            engine => engine,
        }
    }

    /// Whether step `step` is logged (the last step always is, and so is every step whose
    /// weights go to the diagnostics).
    fn logged(&self, step: usize) -> bool {
        step.is_multiple_of(self.log_every) || step == self.steps || self.wants_weights(step)
    }

    /// Whether the record of step `step` carries the weights.
    fn wants_weights(&self, step: usize) -> bool {
        self.diagnostics_every > 0
            && (step.is_multiple_of(self.diagnostics_every) || step == self.steps)
    }

    fn optimizer(&self) -> ModuleOptimizer {
        self.optimizer.init(self.momentum, 0.0)
    }
}

/// Losses of every replica at one logged step (before that step's update).
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// Step index k: the weights W_k after k updates.
    pub step: usize,
    /// Clean training loss ½ Σ (f(W_k, x_i) − y_i)² per replica.
    pub clean_loss: Vec<f64>,
    /// The objective's value at W_k, per replica: for the masked objectives, the loss on the
    /// step's own mask(s).
    pub masked_loss: Vec<f64>,
    /// W_k of every replica, `[R, m, d]` row-major, at the steps `diagnostics_every` asks for.
    pub weights: Option<Vec<f64>>,
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainError {
    /// The loss of a replica became NaN or infinite.
    Diverged {
        /// Step where it was seen.
        step: usize,
        /// Replica index within the run.
        replica: usize,
        /// The value seen.
        value: f64,
    },
    /// The model and training configs do not fit together (the message names the fields).
    Config(InputError),
    /// A step was asked of a training whose `steps` are all done.
    Finished {
        /// The training's `steps`.
        steps: usize,
    },
}

/// A model's or a training run's state that cannot be written as bytes or read back.
#[derive(Debug, Clone, PartialEq)]
pub enum StateError {
    /// Burn could not record it.
    Encode(String),
    /// The bytes are not a state of this model or run (damaged, truncated, another shape or
    /// data); the message says which.
    Mismatch(String),
    /// The run the state belongs to cannot be set up.
    Train(TrainError),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Encode(message) => write!(f, "cannot record the state: {message}"),
            StateError::Mismatch(message) => f.write_str(message),
            StateError::Train(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StateError {}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Diverged {
                step,
                replica,
                value,
            } => write!(
                f,
                "training diverged at step {step}: replica {replica} has loss {value}; the \
                 learning rate is likely too large for its κ (lower train.lr)"
            ),
            TrainError::Config(message) => f.write_str(message),
            TrainError::Finished { steps } => write!(f, "train.steps: all {steps} steps are done"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Trains `replicas` of the two-layer network on `data` and calls `log` at every logged step.
///
/// The engine is `config.engine` (`auto`: see [`Engine::Auto`]). Returns the trained network on
/// the autodiff variant of `device`.
///
/// ```
/// use burn::tensor::Device;
/// use gaussmask_data::SyntheticConfig;
/// use gaussmask_nn::{Replica, TwoLayerReluConfig};
/// use gaussmask_train::{TrainConfig, train_two_layer};
///
/// let data = SyntheticConfig::new(100, 5).generate();
/// let model = TwoLayerReluConfig::new(5, 50);
/// // Clean and masked training side by side, one replica each.
/// let replicas = [0.0, 1.0].map(|kappa| Replica { kappa, seed: 0 });
/// let config: TrainConfig = toml::from_str("steps = 200\nlr = 0.01\nlog_every = 200").unwrap();
/// let mut first_and_last = Vec::new();
/// train_two_layer(&model, &replicas, &data, &config, &Device::flex(), |log| {
///     first_and_last.push(log.clean_loss.clone())
/// })
/// .unwrap();
/// let (start, end) = (&first_and_last[0], &first_and_last[1]);
/// assert!(end[0] < start[0] && end[1] < start[1]);
/// assert!(end[1] > end[0]); // the mask leaves a floor above clean training
/// ```
pub fn train_two_layer(
    model_config: &TwoLayerReluConfig,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    log: impl FnMut(&LogRecord),
) -> Result<TwoLayerRelu, TrainError> {
    let device_noise = model_config.mask.noise == MaskNoise::Device;
    let engine = match config.resolved_engine(is_gpu(device)) {
        // The host engine draws stream masks only; the fused engine takes either source.
        Engine::Host if device_noise && config.engine == Engine::Auto => Engine::Fused,
        Engine::Host if device_noise => {
            return Err(TrainError::Config(
                "train.engine = \"host\" draws its masks from host streams; with \
                 model.mask.noise = \"device\" use engine \"fused\", \"autodiff\" or \"auto\""
                    .into(),
            ));
        }
        engine => engine,
    };
    match engine {
        Engine::Autodiff | Engine::Auto => {
            autodiff::train(model_config, replicas, data, config, device, log)
        }
        Engine::Fused => fused::train(model_config, replicas, data, config, device, log),
        Engine::Host => host::train(model_config, replicas, data, config, device, log),
    }
}

/// Whether `device` is a GPU, asked of the device at run time (so it needs no backend feature):
/// cubecl devices keep a memory pool and report it, CPU backends (flex, ndarray) report none.
pub fn is_gpu(device: &Device) -> bool {
    device.memory_pool_usage().is_some()
}

/// The batch schedule every engine shares: the full batch, or minibatches in an order all
/// replicas share, reshuffled at each pass.
struct Batches {
    all: Vec<usize>,
    order: Vec<usize>,
    cursor: usize,
    stream: Stream,
    batch_size: Option<usize>,
}

impl Batches {
    fn new(n: usize, batch_size: Option<usize>, shuffle_seed: u64) -> Self {
        let all: Vec<usize> = (0..n).collect();
        Self {
            order: all.clone(),
            all,
            cursor: n,
            stream: Stream::new(shuffle_seed, tag::BATCH),
            batch_size,
        }
    }

    /// The shuffle state: order, cursor and stream.
    fn state(&self) -> (Vec<usize>, usize, [u64; 6]) {
        (self.order.clone(), self.cursor, self.stream.state())
    }

    /// Restores a [`Batches::state`].
    fn set_state(&mut self, order: Vec<usize>, cursor: usize, stream: [u64; 6]) {
        (self.order, self.cursor, self.stream) = (order, cursor, Stream::from_state(stream));
    }

    /// Every row index.
    fn all(&self) -> &[usize] {
        &self.all
    }

    /// The rows of the next step: `None` for the full batch.
    fn next(&mut self) -> Option<Vec<usize>> {
        let b = self.batch_size?;
        if self.cursor + b > self.order.len() {
            self.stream.shuffle(&mut self.order);
            self.cursor = 0;
        }
        let rows = self.order[self.cursor..self.cursor + b].to_vec();
        self.cursor += b;
        Some(rows)
    }
}

/// The divergence check of every logged step.
fn check_finite(record: &LogRecord) -> Result<(), TrainError> {
    let replicas = record.clean_loss.len();
    for (i, &value) in record
        .clean_loss
        .iter()
        .chain(&record.masked_loss)
        .enumerate()
    {
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                step: record.step,
                replica: i % replicas,
                value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut c = TrainConfig {
            steps: 10,
            lr: f64::NAN,
            lr_output: None,
            optimizer: Optimizer::Gd,
            momentum: 0.0,
            batch_size: None,
            objective: Objective::Masked,
            log_every: 1,
            masks_per_step: 1,
            exact_chunk: 32,
            shuffle_seed: 0,
            engine: Engine::Auto,
            diagnostics_every: 0,
        };
        assert!(c.validate(5).unwrap_err().contains("train.lr"));
        c.lr = 0.1;
        c.batch_size = Some(6);
        assert!(c.validate(5).unwrap_err().contains("train.batch_size"));
        c.batch_size = Some(5);
        assert!(c.validate(5).is_ok());
        c.engine = Engine::Host;
        c.optimizer = Optimizer::Adam;
        assert!(c.validate(5).unwrap_err().contains("train.engine"));
        c.engine = Engine::Auto;
        assert_eq!(c.resolved_engine(false), Engine::Autodiff);
        c.optimizer = Optimizer::Gd;
        assert_eq!(c.resolved_engine(false), Engine::Host);
        assert_eq!(c.resolved_engine(true), Engine::Fused);
    }
}
