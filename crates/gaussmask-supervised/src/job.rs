//! One model of `gaussmask train`: the data read and prepared once ([`Job`]), and the
//! training of one (κ, seed) as a unit of work that is checkpointed while it trains.

use burn::module::Module;
use burn::tensor::Device;
use gaussmask_data::Dataset;
use gaussmask_harness::{HarnessError, RunContext, Training};
use gaussmask_train::classify::model_bytes;
use gaussmask_train::fit::{DpSgd, Fit};
use serde::{Deserialize, Serialize};
use toml::Table;

use crate::config::{JobConfig, Task};
use crate::data::{Loaded, Prepared, load, prepare};
use crate::network::{Dims, Network, outputs, score};
use crate::saved::{self, Manifest, SavedModel};

/// One logged evaluation of one model (clean inputs, evaluation mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Mask level of the model.
    pub kappa: f64,
    /// Seed of the model.
    pub seed: u64,
    /// Epochs done (fractional when logging every few steps).
    pub epoch: f64,
    /// Optimizer steps done.
    pub step: usize,
    /// Loss on the training part: MSE in the target's units, or cross-entropy.
    pub train_loss: f64,
    /// Loss on the validation part.
    pub val_loss: f64,
    /// Accuracy on the training part (classification; the MSE again for regression).
    pub train_metric: f64,
    /// Accuracy on the validation part (classification; the MSE again for regression).
    pub val_metric: f64,
}

/// A finished model: its metrics and its Burn record (the output of one unit of work).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedModel {
    pub(crate) rows: Vec<MetricRow>,
    pub(crate) record: Vec<u8>,
    pub(crate) test: Option<(f64, f64)>,
}

/// The data of a run, read and prepared once per process (see [`TrainRun`]).
pub(crate) struct Job {
    pub(crate) config: JobConfig,
    pub(crate) loaded: Loaded,
    pub(crate) prepared: Prepared,
    /// DP-SGD's noise and ε, when `[train.dp]` is set.
    pub(crate) privacy: Option<crate::config::Privacy>,
}

impl Job {
    /// Parses the config and reads, splits and standardizes the data: every input error is
    /// found here, before a run directory exists. `model_rows` gives, from the training part's
    /// rows, how many each model trains on (what DP-SGD's ε is accounted over).
    pub(crate) fn new(
        table: &Table,
        model_rows: impl Fn(usize) -> usize,
    ) -> Result<Self, HarnessError> {
        let config = JobConfig::from_table(table)?;
        let loaded = load(&config.data, config.seed).map_err(HarnessError::input)?;
        let prepared = prepare(&loaded, &config.data, config.seed).map_err(HarnessError::input)?;
        if let Some(image) = config.model.image() {
            image.validate(loaded.shape).map_err(HarnessError::input)?;
        }
        if matches!(config.model.kind, crate::config::ModelKind::Cnn(_)) && loaded.shape[1] == 1 {
            return Err(HarnessError::input(format!(
                "model.kind = \"cnn\" needs image inputs: set data.shape = [channels, height, \
                 width] (the {} inputs are flat)",
                loaded.rows.d
            )));
        }
        if config.data.task == Task::Classification && loaded.classes.len() < 2 {
            return Err(HarnessError::input(format!(
                "data.task = \"classification\" needs at least 2 classes in the target '{}', \
                 found {}",
                loaded.target,
                loaded.classes.len()
            )));
        }
        let privacy = match &config.train.dp {
            None => None,
            Some(dp) => Some(
                dp.resolve(&config.train, model_rows(prepared.train.n))
                    .map_err(HarnessError::input)?,
            ),
        };
        Ok(Self {
            config,
            loaded,
            prepared,
            privacy,
        })
    }

    pub(crate) fn dims(&self) -> Dims {
        Dims {
            shape: self.loaded.shape,
            outputs: match self.config.data.task {
                Task::Regression => 1,
                Task::Classification => self.loaded.classes.len(),
            },
        }
    }

    /// The fresh network of model (κ index, seed).
    pub(crate) fn network(&self, kappa: f64, seed: u64, device: &Device) -> Network {
        Network::init(
            &self.config.model,
            self.dims(),
            self.config.data.task,
            kappa,
            seed,
            self.config.train.label_smoothing,
            device,
        )
    }

    fn scale(&self) -> f64 {
        self.prepared.target.std[0]
    }

    /// Loss and metric of the evaluation model on `data`.
    pub(crate) fn evaluate(&self, net: &Network, data: &Dataset, device: &Device) -> (f64, f64) {
        if data.n == 0 {
            return (f64::NAN, f64::NAN);
        }
        score(
            self.config.data.task,
            &outputs(net, data, device),
            data,
            self.scale(),
        )
    }

    fn row(&self, net: &Network, kappa: f64, seed: u64, step: usize, device: &Device) -> MetricRow {
        let p = &self.prepared;
        let (train_loss, train_metric) = self.evaluate(net, &p.train, device);
        let (val_loss, val_metric) = self.evaluate(net, &p.validation, device);
        MetricRow {
            kappa,
            seed,
            epoch: step as f64 / self.config.train.steps_per_epoch(p.train.n) as f64,
            step,
            train_loss,
            val_loss,
            train_metric,
            val_metric,
        }
    }

    /// Trains model (κ, seed) on `data` from its checkpoint `key` (or from scratch), with a
    /// row of metrics every `train.log_every` steps when `log` is set (else only at step 0);
    /// returns the trained model (training mode) and its rows.
    pub(crate) fn train_model(
        &self,
        ctx: &RunContext,
        key: &str,
        (kappa, seed): (f64, u64),
        data: &Dataset,
        log: bool,
        tick: impl FnMut(),
    ) -> Result<(Network, Vec<MetricRow>), HarnessError> {
        let device = ctx.device.clone().autodiff();
        let plain = ctx.device.clone();
        let mut settings = self.config.train.fit_config(data.n, seed);
        settings.dp = self.privacy.as_ref().map(|p| DpSgd {
            clip: p.clip,
            noise_multiplier: p.noise_multiplier,
        });
        let model = self.network(kappa, seed, &device);
        let name = format!("κ = {}, seed {seed}", gaussmask_nn::kappa_label(kappa));
        let every = self.config.train.log_interval(data.n);
        let on_step = |fit: &Fit<Network>, rows: &mut Vec<MetricRow>| {
            let step = fit.step();
            if log && (step.is_multiple_of(every) || step == fit.steps()) {
                rows.push(self.row(&fit.model().valid(), kappa, seed, step, &plain));
            }
            Ok(())
        };
        let begin = |saved: Option<(&[u8], &_)>| {
            let fit = match saved {
                Some((bytes, _)) => Fit::resume(model, bytes, data, &settings, &device)
                    .map_err(|e| e.to_string())?,
                None => Fit::new(model, data, &settings, &device).map_err(|e| e.to_string())?,
            };
            Ok(Training::new(fit, name.as_str(), on_step))
        };
        let first_row = |t: &Training<'_, Network, Vec<MetricRow>, _>| {
            if log {
                vec![self.row(&t.fit().model().valid(), kappa, seed, 0, &plain)]
            } else {
                Vec::new()
            }
        };
        let (training, rows) = ctx.run_resumable(key, &name, begin, first_row, tick)?;
        Ok((training.into_fit().into_model(), rows))
    }

    /// Trains model (κ, seed) of `gaussmask train` on the whole training part, from its
    /// checkpoint `key` (or from scratch).
    pub(crate) fn train_unit(
        &self,
        ctx: &RunContext,
        key: &str,
        kappa: f64,
        seed: u64,
        tick: impl FnMut(),
    ) -> Result<TrainedModel, HarnessError> {
        let (model, rows) =
            self.train_model(ctx, key, (kappa, seed), &self.prepared.train, true, tick)?;
        let trained = model.valid();
        let test = self
            .prepared
            .test
            .as_ref()
            .map(|t| self.evaluate(&trained, t, &ctx.device));
        Ok(TrainedModel {
            rows,
            record: model_bytes(&model).map_err(|e| {
                HarnessError::run(format!(
                    "κ = {}, seed {seed}: {e}",
                    gaussmask_nn::kappa_label(kappa)
                ))
            })?,
            test,
        })
    }

    /// The manifest (`model.json`) of this job's trained `models`.
    pub(crate) fn manifest(
        &self,
        dtype: String,
        metric: &str,
        models: Vec<SavedModel>,
    ) -> Manifest {
        let dims = self.dims();
        Manifest {
            format: saved::FORMAT.into(),
            format_version: saved::FORMAT_VERSION,
            gaussmask_version: env!("CARGO_PKG_VERSION").into(),
            task: self.config.data.task,
            model: self.config.model.clone(),
            shape: dims.shape,
            outputs: dims.outputs,
            features: self.loaded.features.clone(),
            target: self.loaded.target.clone(),
            classes: self.loaded.classes.clone(),
            input_standardization: self.prepared.inputs.clone(),
            target_standardization: self.prepared.target.clone(),
            label_smoothing: self.config.train.label_smoothing,
            dtype,
            metric: metric.into(),
            models,
        }
    }
}
