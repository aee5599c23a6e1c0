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

use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use gaussmask_data::Dataset;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_nn::{DeepRelu, TwoLayerRelu, half_sse};

use crate::{Batches, TrainError};

/// One step's samples, handed to [`Trainable::loss`].
///
/// # Shapes
/// - `x`: `[n, d]`, `y`: `[n]`; `rows`: the n dataset indices (what fixed-per-sample masks are
///   keyed by)
/// - with replicas on their own rows ([`Fit::with_replica_rows`]), n = R·b: R blocks of b
///   rows, block r replica r's, its `rows` the positions in replica r's own rows
#[derive(Clone, Debug)]
pub struct Batch {
    /// Inputs, clean: the model masks them itself.
    pub x: Tensor<2>,
    /// Targets (regression values, or class indices as floats).
    pub y: Tensor<1>,
    /// Dataset indices of the rows.
    pub rows: Vec<usize>,
    /// Blocks of rows: 1, every replica's (the usual case), or R, one per replica.
    pub blocks: usize,
}

/// What [`fit`] needs of a model: its differentiable loss on a batch, its input mask applied as
/// in training (the model holds the mask; `valid()` turns it off for evaluation).
pub trait Trainable: Module {
    /// The loss of each replica (`[R]`; `[1]` for a model without replicas). Replicas are
    /// independent, so the gradient of the sum is each replica's own.
    fn loss(&self, batch: &Batch) -> Tensor<1>;

    /// DP-SGD's clipped gradient sum over the samples of `batch`: Σ_i min(1, clip/‖∇L_i‖)·∇L_i,
    /// each sample's loss L_i on its own mask, with Σ_i L_i (`[1]`, detached), in one forward
    /// and one backward pass. `None`, the default, where the model cannot: DP-SGD then takes a
    /// backward pass per sample. A model that overrides it must give what that loop,
    /// [`per_sample_clipped_sum`], gives, with a gradient for every parameter it has (a
    /// parameter left out would get neither its gradient nor its noise).
    fn clipped_gradient_sum(
        &self,
        _batch: &Batch,
        _clip: f64,
    ) -> Option<(Tensor<1>, burn::optim::GradientsParams)> {
        None
    }

    /// R, where the model trains R replicas each on rows of its own from batches of R blocks
    /// ([`Fit::with_replica_rows`], [`Batch::blocks`]); `None`, the default, where it does not.
    fn replicas_with_own_rows(&self) -> Option<usize> {
        None
    }
}

impl Trainable for TwoLayerRelu {
    /// ½ Σ_i (f(W, x_i ⊙ c_i) − y_i)² per replica, the paper's masked loss.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = batch.x.clone().unsqueeze_dim::<3>(0);
        half_sse(self.forward(x, &batch.rows), batch.y.clone().unsqueeze())
    }
}

impl Trainable for DeepRelu {
    /// ½ Σ_i (f(x_i ⊙ c_i) − y_i)² per replica.
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = batch.x.clone().unsqueeze_dim::<3>(0);
        half_sse(self.forward(x, &batch.rows), batch.y.clone().unsqueeze())
    }
}

mod checkpoint;
mod config;
mod dp;

pub use config::{DpSgd, FitConfig, Optimizer, Schedule};
use dp::dp_gradients;
pub use dp::{flat_gradients, per_sample_clipped_sum, poisson_rows};

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
    /// Per replica, its own rows and their order (empty: the replicas share `batches`).
    own: Vec<OwnRows>,
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
            own: Vec::new(),
            step: 0,
            done: false,
        })
    }

    /// The same run (at step 0) with each replica on its own rows of the dataset: replica r
    /// draws its batches from `own[r].0` in an order shuffled by the seed `own[r].1`, as a
    /// one-replica run on just those rows with that shuffle seed does, and the model gets
    /// batches of R blocks ([`Batch::blocks`]). LiRA's shadow models, each on its own half of
    /// a pool, train this way as one model.
    ///
    /// # Errors
    /// [`TrainError::Config`] for a model that does not train replicas on rows of their own
    /// ([`Trainable::replicas_with_own_rows`]) or has another number of them, with DP-SGD (its
    /// Poisson batches differ in size from replica to replica), with replicas of different
    /// sizes, a batch larger than a replica's rows, or a row outside the dataset.
    pub fn with_replica_rows(mut self, own: Vec<(Vec<usize>, u64)>) -> Result<Self, TrainError> {
        let fail = |why: String| Err(TrainError::Config(why.into()));
        match self.model().replicas_with_own_rows() {
            Some(r) if r == own.len() => {}
            Some(r) => return fail(format!("replica rows: {} sets for {r} replicas", own.len())),
            None => {
                return fail(
                    "replica rows: the model does not train replicas on rows of their own".into(),
                );
            }
        }
        if self.config.dp.is_some() {
            return fail(
                "train.dp: DP-SGD trains one model at a time, not replicas on rows of their own"
                    .into(),
            );
        }
        let n = own.first().map_or(0, |(rows, _)| rows.len());
        if n == 0 || own.iter().any(|(rows, _)| rows.len() != n) {
            return fail(
                "replica rows: every replica needs the same number of rows, at least 1".into(),
            );
        }
        if let Some(b) = self.config.batch_size
            && b > n
        {
            return fail(format!(
                "train.batch_size must be ≤ each replica's {n} rows, got {b}"
            ));
        }
        if let Some(&i) = own
            .iter()
            .flat_map(|(rows, _)| rows)
            .find(|&&i| i >= self.data.n)
        {
            return fail(format!(
                "replica rows: row {i} of a dataset of {} rows",
                self.data.n
            ));
        }
        self.own = own
            .into_iter()
            .map(|(rows, seed)| OwnRows {
                batches: Batches::new(rows.len(), self.config.batch_size, seed),
                rows,
            })
            .collect();
        Ok(self)
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
        let own = (!self.own.is_empty()).then(|| own_batch(self.data, &mut self.own, &self.device));
        let rows = match own {
            None => self.batches.next(),
            Some(_) => None,
        };
        let config = &self.config;
        let (loss, grads) = match (config.dp, update) {
            (Some(dp), true) => {
                let q = config.sampling_rate(self.data.n);
                let rows = poisson_rows(self.data.n, q, config.shuffle_seed, step as u64);
                dp_gradients(
                    &model,
                    self.data,
                    &rows,
                    q * self.data.n as f64,
                    dp,
                    &mut self.privacy,
                    &self.device,
                )
            }
            _ => {
                let batch = match (own, &rows) {
                    (Some(own), _) => own,
                    (None, None) => self
                        .all
                        .get_or_insert_with(|| batch(self.data, self.batches.all(), &self.device))
                        .clone(),
                    (None, Some(rows)) => self::batch(self.data, rows, &self.device),
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
}

/// A replica's own rows of the dataset and their shuffled order ([`Fit::with_replica_rows`]).
struct OwnRows {
    /// Dataset indices.
    rows: Vec<usize>,
    /// Order over positions in `rows`.
    batches: Batches,
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
        blocks: 1,
    }
}

/// Each replica's next rows of its own ([`Fit::with_replica_rows`]) as one batch of R blocks.
fn own_batch(data: &Dataset, own: &mut [OwnRows], device: &Device) -> Batch {
    let (mut positions, mut rows) = (Vec::new(), Vec::new());
    for o in own.iter_mut() {
        let picked = o.batches.next().unwrap_or_else(|| o.batches.all().to_vec());
        rows.extend(picked.iter().map(|&p| o.rows[p]));
        positions.extend(picked);
    }
    Batch {
        rows: positions,
        blocks: own.len(),
        ..batch(data, &rows, device)
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
