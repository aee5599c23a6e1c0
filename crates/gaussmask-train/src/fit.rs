//! One autodiff training loop for any Burn model that puts an input mask in front of itself:
//! the model says how to compute its loss on a batch ([`Trainable`]); [`fit`] draws the batches,
//! differentiates, and steps a `burn::optim` optimizer under a `burn::optim::lr_scheduler`
//! schedule.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Device, Tensor, activation::relu};
//! use gaussmask_data::SyntheticConfig;
//! use gaussmask_nn::{InputMask, MaskConfig};
//! use gaussmask_train::fit::{Batch, FitConfig, Trainable, fit};
//!
//! #[derive(Module, Debug)]
//! struct Net {
//!     mask: InputMask,
//!     hidden: Linear,
//!     out: Linear,
//! }
//!
//! impl Trainable for Net {
//!     fn loss(&self, batch: &Batch) -> Tensor<1> {
//!         let h = relu(self.hidden.forward(self.mask.forward_indexed(batch.x.clone(), &batch.rows)));
//!         let f = self.out.forward(h).squeeze_dim::<1>(1);
//!         (f - batch.y.clone()).square().mean().reshape([1])
//!     }
//! }
//!
//! let device = Device::flex().autodiff();
//! let net = Net {
//!     mask: MaskConfig::default().init(0.3, 1),
//!     hidden: LinearConfig::new(5, 16).init(&device),
//!     out: LinearConfig::new(16, 1).init(&device),
//! };
//! let data = SyntheticConfig::new(64, 5).generate();
//! let config = FitConfig { steps: 20, lr: 0.01, ..FitConfig::default() };
//! let mut losses = Vec::new();
//! let net = fit(net, &data, &config, &device, |log, _| losses.push(log.loss[0])).unwrap();
//! assert!(losses.last().unwrap() < &losses[0]);
//! ```

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::OptimizerRecord;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_nn::{DeepRelu, TwoLayerRelu, half_sse};
use serde::{Deserialize, Serialize};

use crate::{Batches, TrainError};

/// One step's samples, handed to [`Trainable::loss`].
///
/// # Shapes
/// - `x`: `[n, d]`, `y`: `[n]`; `rows`: the n dataset indices (what fixed-per-sample masks are
///   keyed by)
#[derive(Clone, Debug)]
pub struct Batch {
    /// Inputs, clean: the model masks them itself.
    pub x: Tensor<2>,
    /// Targets (regression values, or class indices as floats).
    pub y: Tensor<1>,
    /// Dataset indices of the rows.
    pub rows: Vec<usize>,
}

/// What [`fit`] needs of a model: its differentiable loss on a batch, its input mask applied as
/// in training (the model holds the mask; `valid()` turns it off for evaluation).
pub trait Trainable: Module {
    /// The loss of each replica (`[R]`; `[1]` for a model without replicas). Replicas are
    /// independent, so the gradient of the sum is each replica's own.
    fn loss(&self, batch: &Batch) -> Tensor<1>;
}

impl Trainable for TwoLayerRelu {
    /// ½ Σ_i (f(W, x_i ⊙ c_i) − y_i)² per replica, the paper's masked loss.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = batch.x.clone().unsqueeze_dim::<3>(0);
        half_sse(
            self.forward_masked(x, &batch.rows),
            batch.y.clone().unsqueeze(),
        )
    }
}

impl Trainable for DeepRelu {
    /// ½ Σ_i (f(x_i ⊙ c_i) − y_i)² per replica.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = batch.x.clone().unsqueeze_dim::<3>(0);
        half_sse(
            self.forward_masked(x, &batch.rows),
            batch.y.clone().unsqueeze(),
        )
    }
}

/// The optimizer of [`fit`], from `burn::optim`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitOptimizer {
    /// (Stochastic) gradient descent, with heavy-ball momentum when `momentum` > 0; weight
    /// decay added to the gradient (L2).
    #[default]
    #[serde(alias = "sgd")]
    Gd,
    /// Adam, weight decay added to the gradient (L2).
    Adam,
    /// AdamW, decoupled weight decay.
    #[serde(alias = "adamw")]
    AdamW,
}

/// The learning-rate schedule of [`fit`], from `burn::optim::lr_scheduler`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FitSchedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Cosine annealing from `lr` to `min_lr` over the run.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
}

/// Settings of [`fit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitConfig {
    /// Gradient steps.
    pub steps: usize,
    /// Rows per step; `None` is the full batch.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Learning rate (the schedule's start).
    pub lr: f64,
    /// Optimizer.
    #[serde(default)]
    pub optimizer: FitOptimizer,
    /// Momentum of `gd` (0 = none).
    #[serde(default)]
    pub momentum: f64,
    /// Weight decay: L2 for `gd` and `adam`, decoupled for `adamw`.
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: FitSchedule,
    /// Masks drawn per step; the loss is their mean (the masked-k objective). 1 with `dp`.
    #[serde(default = "one")]
    pub masks_per_step: usize,
    /// Seed of the minibatch order, of the device generator's seed at each step (what
    /// `burn::nn::Dropout` and on-device masks draw from) and of DP-SGD's noise.
    #[serde(default)]
    pub shuffle_seed: u64,
    /// Log every this many steps (the last step always).
    #[serde(default = "one")]
    pub log_every: usize,
    /// DP-SGD (absent: ordinary gradients).
    #[serde(default)]
    pub dp: Option<DpSgd>,
}

/// DP-SGD (Abadi et al. 2016): each sample's gradient is clipped to norm ≤ `clip`, the clipped
/// gradients are summed, Gaussian noise of std `noise_multiplier · clip` is added to every
/// coordinate, and the sum is divided by the batch size. Per-sample gradients need a model
/// whose loss on one sample does not depend on its batch-mates (no batch norm).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSgd {
    /// Clipping norm C.
    pub clip: f64,
    /// Noise multiplier σ.
    pub noise_multiplier: f64,
}

impl DpSgd {
    /// Checks both fields; the error names the field under `at` (e.g. `train.dp`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(format!(
                "{at}.clip must be a finite number > 0, got {}",
                self.clip
            ));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(format!(
                "{at}.noise_multiplier must be a finite number ≥ 0, got {}",
                self.noise_multiplier
            ));
        }
        Ok(())
    }
}

fn one() -> usize {
    1
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: None,
            lr: 1e-3,
            optimizer: FitOptimizer::Gd,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: FitSchedule::Constant,
            masks_per_step: 1,
            shuffle_seed: 0,
            log_every: 1,
            dp: None,
        }
    }
}

impl FitConfig {
    /// Checks every field against a dataset of `n` rows; the error names the field (under
    /// `train.`).
    pub fn validate(&self, n: usize) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.steps == 0 {
            return Err("train.steps must be ≥ 1, got 0".into());
        }
        if !positive(self.lr) {
            return Err(format!(
                "train.lr must be a finite number > 0, got {}",
                self.lr
            ));
        }
        if let Some(b) = self.batch_size
            && !(1..=n).contains(&b)
        {
            return Err(format!(
                "train.batch_size must lie in 1..={n} (the rows), got {b}"
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "train.momentum must lie in [0, 1), got {}",
                self.momentum
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "train.weight_decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if let FitSchedule::Cosine { min_lr } = self.schedule
            && !(0.0..=self.lr).contains(&min_lr)
        {
            return Err(format!(
                "train.schedule.min_lr must lie in [0, lr], got {min_lr}"
            ));
        }
        if self.masks_per_step == 0 {
            return Err("train.masks_per_step must be ≥ 1, got 0".into());
        }
        if self.log_every == 0 {
            return Err("train.log_every must be ≥ 1, got 0".into());
        }
        if let Some(dp) = &self.dp {
            dp.validate("train.dp")?;
            // A per-sample gradient sees one mask; a mean over k would change what is clipped.
            if self.masks_per_step != 1 {
                return Err(format!(
                    "train.masks_per_step must be 1 with train.dp (DP-SGD clips one masked \
                     gradient per sample), got {}",
                    self.masks_per_step
                ));
            }
        }
        self.scheduler().map(|_| ())
    }

    /// The `burn::optim` optimizer these settings describe.
    pub fn optimizer(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.optimizer {
            FitOptimizer::Gd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                }))
                .init(),
            FitOptimizer::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            FitOptimizer::AdamW => AdamWConfig::new()
                .with_weight_decay(self.weight_decay as f32)
                .init(),
        }
    }

    /// The `burn::optim::lr_scheduler` schedule these settings describe.
    pub fn scheduler(&self) -> Result<ModuleLrScheduler, String> {
        match self.schedule {
            FitSchedule::Constant => Ok(ModuleLrScheduler::new(self.lr)),
            FitSchedule::Cosine { min_lr } => {
                CosineAnnealingLrSchedulerConfig::new(self.lr, self.steps)
                    .with_min_lr(min_lr)
                    .init()
                    .map_err(|e| format!("train.schedule: {e}"))
            }
        }
    }
}

/// What [`fit`] reports at a logged step (every `log_every` steps, and step `steps`, the
/// trained model, which is evaluated but not updated).
#[derive(Clone, Debug, PartialEq)]
pub struct FitLog {
    /// Updates done so far: the model is W_step.
    pub step: usize,
    /// The step's loss per replica, on the step's masks.
    pub loss: Vec<f64>,
}

/// Trains `model` on `data` with Burn's autodiff: each step draws a batch, asks the model for
/// its loss (its own mask applied), differentiates, and steps the optimizer of `config` at the
/// scheduled learning rate. `hook` sees every logged step with the model as it was for that
/// step's loss (call `valid()` on it to evaluate clean). `device` must be an autodiff device.
/// [`Fit`] is the same loop, stoppable and resumable.
///
/// # Errors
/// [`TrainError::Config`] for invalid settings; [`TrainError::Diverged`] when a loss becomes
/// NaN or infinite.
pub fn fit<M: Trainable>(
    model: M,
    data: &Dataset,
    config: &FitConfig,
    device: &Device,
    hook: impl FnMut(&FitLog, &M),
) -> Result<M, TrainError> {
    let mut run = Fit::new(model, data, config, device)?;
    run.run_until(config.steps, hook)?;
    Ok(run.into_model())
}

/// A run of [`fit`] that can stop after any step, save a checkpoint, and continue from it
/// bit-exactly (same batches, masks and optimizer state as the uninterrupted run).
///
/// A checkpoint holds the model's Burn record (weights, and the mask streams, which the mask
/// layer records with them), the optimizer's and the schedule's records, the minibatch order and
/// the step. Resume runs in f32: Burn 0.22.1 rebuilds optimizer state from its record on
/// `Device::default()` in that device's float type, so an f64 run with a stateful optimizer
/// (Adam, AdamW, momentum) fails at its first step after a resume.
pub struct Fit<'a, M: Trainable> {
    model: Option<M>,
    data: &'a Dataset,
    config: FitConfig,
    device: Device,
    optimizer: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    batches: Batches,
    /// The full batch, built on first use.
    all: Option<Batch>,
    /// Seeds the device generator before each step.
    device_seeds: Stream,
    /// DP-SGD's gradient noise.
    privacy: Stream,
    step: usize,
    /// Whether the final model has been evaluated.
    done: bool,
}

/// The small part of a checkpoint that is ours (the records are Burn's).
#[derive(Serialize, Deserialize)]
struct FitHeader {
    step: usize,
    order: Vec<usize>,
    cursor: usize,
    stream: [u64; 6],
    device_seeds: [u64; 6],
    privacy: [u64; 6],
    /// Lengths of the model, optimizer and schedule records that follow.
    records: [usize; 3],
}

/// Leads every checkpoint of [`Fit::checkpoint`].
const FIT_MAGIC: &[u8] = b"GMFIT2\n";

impl<'a, M: Trainable> Fit<'a, M> {
    /// A run at step 0.
    ///
    /// # Errors
    /// [`TrainError::Config`] for invalid settings.
    pub fn new(
        model: M,
        data: &'a Dataset,
        config: &FitConfig,
        device: &Device,
    ) -> Result<Self, TrainError> {
        config.validate(data.n).map_err(TrainError::Config)?;
        let batches = Batches::new(data.n, config.batch_size, config.shuffle_seed);
        Ok(Self {
            all: None,
            device_seeds: Stream::new(config.shuffle_seed, tag::DROPOUT),
            privacy: Stream::new(config.shuffle_seed, tag::PRIVACY),
            model: Some(model),
            data,
            config: config.clone(),
            device: device.clone(),
            optimizer: config.optimizer(),
            scheduler: config.scheduler().map_err(TrainError::Config)?,
            batches,
            step: 0,
            done: false,
        })
    }

    /// Updates done so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Updates of the whole run (`steps` of its config).
    pub fn steps(&self) -> usize {
        self.config.steps
    }

    /// The model at the current step.
    pub fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the model is only taken while stepping")
    }

    /// The trained model.
    pub fn into_model(mut self) -> M {
        self.model
            .take()
            .expect("the model is only taken while stepping")
    }

    /// One update, whatever `log_every` says: the loss at the current weights (returned), then
    /// the optimizer step. Unlike [`Fit::run_until`] it never evaluates the final model, so a
    /// model with side effects in its training forward pass (batch-norm statistics) sees
    /// exactly one forward pass per update.
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when the loss becomes NaN or infinite; [`TrainError::Finished`]
    /// when all `steps` are done.
    pub fn advance(&mut self) -> Result<FitLog, TrainError> {
        if self.step >= self.config.steps {
            return Err(TrainError::Finished {
                steps: self.config.steps,
            });
        }
        let mut log = None;
        self.iteration(&mut |l: &FitLog, _: &M| log = Some(l.clone()), true, true)?;
        self.step += 1;
        Ok(log.expect("advance always logs"))
    }

    /// Runs until `until` updates are done (at most `steps`); reaching `steps`, it also
    /// evaluates and logs the final model, as [`fit`] does.
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when a loss becomes NaN or infinite.
    pub fn run_until(
        &mut self,
        until: usize,
        mut hook: impl FnMut(&FitLog, &M),
    ) -> Result<(), TrainError> {
        while self.step < until.min(self.config.steps) {
            self.iteration(&mut hook, true, false)?;
            self.step += 1;
        }
        // Step `steps` only evaluates: W_steps is logged like every W_k before it.
        if until >= self.config.steps && !self.done {
            self.iteration(&mut hook, false, false)?;
            self.done = true;
        }
        Ok(())
    }

    /// One step: the loss at the current weights (logged when due, or always with `log_all`),
    /// then the update.
    fn iteration(
        &mut self,
        hook: &mut impl FnMut(&FitLog, &M),
        update: bool,
        log_all: bool,
    ) -> Result<(), TrainError> {
        let step = self.step;
        let model = self
            .model
            .take()
            .expect("the model is only taken while stepping");
        // Whatever the model draws on the device (dropout, on-device masks) is keyed by the
        // step, so a resumed run draws what the uninterrupted one did.
        self.device.seed(self.device_seeds.next_u64());
        let rows = self.batches.next();
        let config = &self.config;
        let (loss, grads) = match (config.dp, update) {
            (Some(dp), true) => {
                let rows = rows.unwrap_or_else(|| self.batches.all().to_vec());
                dp_gradients(
                    &model,
                    self.data,
                    &rows,
                    dp,
                    &mut self.privacy,
                    &self.device,
                )
            }
            _ => {
                let batch = match &rows {
                    None => self
                        .all
                        .get_or_insert_with(|| batch(self.data, self.batches.all(), &self.device))
                        .clone(),
                    Some(rows) => self::batch(self.data, rows, &self.device),
                };
                let loss = masked_loss(&model, &batch, config.masks_per_step);
                let grads = if update {
                    GradientsParams::from_grads(loss.clone().sum().backward(), &model)
                } else {
                    GradientsParams::new()
                };
                (loss, grads)
            }
        };
        if log_all || step.is_multiple_of(config.log_every) || step == config.steps {
            let values = to_f64(loss.without_autodiff());
            if let Some((replica, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite())
            {
                self.model = Some(model);
                return Err(TrainError::Diverged {
                    step,
                    replica,
                    value,
                });
            }
            hook(&FitLog { step, loss: values }, &model);
        }
        self.model = Some(if update {
            self.optimizer.step(self.scheduler.step(), model, grads)
        } else {
            model
        });
        Ok(())
    }

    /// The run's state as bytes: continue it with [`Fit::resume`].
    pub fn checkpoint(&self) -> Result<Vec<u8>, String> {
        // Recorded through `valid()`, which first folds in the last update of running
        // statistics (burn::nn::BatchNorm's; a training-mode record holds the one before).
        let records = [
            self.model().valid().into_record().into_bytes(),
            self.optimizer.to_record().into_bytes(),
            self.scheduler.to_record().into_bytes(),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot record the run: {e}"))?;
        let (order, cursor, stream) = self.batches.state();
        let header = FitHeader {
            step: self.step,
            order,
            cursor,
            stream,
            device_seeds: self.device_seeds.state(),
            privacy: self.privacy.state(),
            records: [records[0].len(), records[1].len(), records[2].len()],
        };
        let mut out = FIT_MAGIC.to_vec();
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        out.extend((header.len() as u64).to_le_bytes());
        out.extend(header);
        for r in &records {
            out.extend_from_slice(r);
        }
        Ok(out)
    }

    /// Continues the run saved in `bytes`: `model` is a model of the same shape (its values are
    /// replaced), `data`, `config` and `device` those of the saved run.
    ///
    /// # Errors
    /// A one-line message when the bytes are not a checkpoint of such a run.
    pub fn resume(
        model: M,
        bytes: &[u8],
        data: &'a Dataset,
        config: &FitConfig,
        device: &Device,
    ) -> Result<Self, String> {
        let bad = |why: &str| format!("not a training checkpoint of this run: {why}");
        let rest = bytes
            .strip_prefix(FIT_MAGIC)
            .ok_or_else(|| bad("no header"))?;
        let (len, rest) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (header, mut rest) = rest.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
        let header: FitHeader = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
        let mut parts = Vec::new();
        for n in header.records {
            let (part, tail) = rest.split_at_checked(n).ok_or_else(|| bad("truncated"))?;
            parts.push(Bytes::from_bytes_vec(part.to_vec()));
            rest = tail;
        }
        if !rest.is_empty() || header.step > config.steps || header.order.len() != data.n {
            return Err(bad("its length, step or rows differ"));
        }
        let mut run = Self::new(model, data, config, device).map_err(|e| e.to_string())?;
        let mut parts = parts.into_iter();
        let mut next = || parts.next().expect("three records");
        let model_record = ModuleRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        let model = run.model.take().expect("fresh run");
        run.model = Some(
            model
                .try_load_record(model_record)
                .map_err(|e| bad(&e.to_string()))?,
        );
        let optimizer = OptimizerRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        run.optimizer = run.optimizer.load_record(optimizer);
        let scheduler = LrSchedulerRecord::from_bytes(next()).map_err(|e| bad(&e.to_string()))?;
        run.scheduler = run.scheduler.load_record(scheduler);
        run.batches
            .set_state(header.order, header.cursor, header.stream);
        run.device_seeds = Stream::from_state(header.device_seeds);
        run.privacy = Stream::from_state(header.privacy);
        run.step = header.step;
        Ok(run)
    }
}

/// The rows of `data` as a [`Batch`] on `device`.
pub fn batch(data: &Dataset, rows: &[usize], device: &Device) -> Batch {
    let d = data.d;
    let mut x = Vec::with_capacity(rows.len() * d);
    for &i in rows {
        x.extend_from_slice(&data.x[i * d..(i + 1) * d]);
    }
    let y = rows.iter().map(|&i| data.y[i]).collect();
    Batch {
        x: from_f64(x, [rows.len(), d], device),
        y: from_f64(y, [rows.len()], device),
        rows: rows.to_vec(),
    }
}

/// The loss of `batch`, the mean over `masks` draws of the mask (the masked-k objective).
fn masked_loss<M: Trainable>(model: &M, batch: &Batch, masks: usize) -> Tensor<1> {
    let loss = (0..masks)
        .map(|_| model.loss(batch))
        .reduce(|acc, l| acc + l)
        .expect("masks_per_step ≥ 1");
    // A product, not `/ k`: Burn 0.22.1's backward of a scalar division rounds the scalar to
    // f32.
    match masks {
        1 => loss,
        k => loss * (1.0 / k as f64),
    }
}

/// DP-SGD's gradient of the samples `rows`: each sample's gradient (its own mask), clipped to
/// norm ≤ C, summed, plus N(0, (σC)²) noise per coordinate, over the batch size. Returns the
/// mean per-sample loss too.
fn dp_gradients<M: Trainable>(
    model: &M,
    data: &Dataset,
    rows: &[usize],
    dp: DpSgd,
    noise: &mut Stream,
    device: &Device,
) -> (Tensor<1>, GradientsParams) {
    let mut sum: Vec<(ParamId, Tensor<1>)> = Vec::new();
    let mut loss_sum: Option<Tensor<1>> = None;
    for &row in rows {
        let loss = model.loss(&batch(data, &[row], device)).sum();
        let grads = GradientsParams::from_grads(loss.clone().backward(), model);
        let mut flat = Flatten {
            grads: &grads,
            out: Vec::new(),
        };
        model.visit(&mut flat);
        let squares: Vec<Tensor<1>> = flat
            .out
            .iter()
            .map(|(_, g)| g.clone().square().sum())
            .collect();
        let norm = Tensor::cat(squares, 0).sum().into_scalar::<f64>().sqrt();
        let scale = (dp.clip / norm.max(f64::MIN_POSITIVE)).min(1.0);
        if sum.is_empty() {
            sum = flat
                .out
                .into_iter()
                .map(|(id, g)| (id, g * scale))
                .collect();
        } else {
            for (acc, (_, g)) in sum.iter_mut().zip(flat.out) {
                acc.1 = acc.1.clone() + g * scale;
            }
        }
        let loss = loss.detach();
        loss_sum = Some(match loss_sum {
            None => loss,
            Some(acc) => acc + loss,
        });
    }
    let std = dp.noise_multiplier * dp.clip;
    let b = rows.len() as f64;
    let values = sum
        .into_iter()
        .map(|(id, acc)| {
            let count = acc.dims()[0];
            let z: Vec<f64> = (0..count).map(|_| std * noise.normal()).collect();
            let device = acc.device();
            (id, (acc + from_f64(z, [count], &device)) * (1.0 / b))
        })
        .collect();
    let mut out = GradientsParams::new();
    model.visit(&mut Register {
        values,
        out: &mut out,
    });
    let loss = loss_sum.expect("a batch has rows") * (1.0 / b);
    (loss, out)
}

/// Each trainable parameter's gradient, flattened, in visiting order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: Vec<(ParamId, Tensor<1>)>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let count = g.dims().iter().product::<usize>();
            self.out.push((param.id, g.reshape([count])));
        }
    }
}

/// Registers flattened gradients under their parameters, in the parameters' shapes.
struct Register<'a> {
    values: Vec<(ParamId, Tensor<1>)>,
    out: &'a mut GradientsParams,
}

impl ModuleVisitor for Register<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(i) = self.values.iter().position(|(id, _)| *id == param.id) {
            let (id, value) = self.values.swap_remove(i);
            self.out.register::<D>(id, value.reshape(param.dims()));
        }
    }
}
