//! `gaussmask train`: one model per (κ, seed) on the user's data, each a unit of work that is
//! checkpointed while it trains and kept once done, then the run directory: `metrics.csv`,
//! `summary.csv`, the learning curves, and the models with everything `predict` needs.

use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use burn::tensor::{Bool, Int, Tensor};
use gaussmask_data::Dataset;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::provenance::sha256_hex;
use gaussmask_harness::{HarnessError, RunContext, Study, Training, Unit, mean_std};
use gaussmask_train::classify::{load_model_bytes, model_bytes};
use gaussmask_train::fit::Fit;
use serde::{Deserialize, Serialize};
use toml::Table;

use crate::config::{JobConfig, Task};
use crate::data::{Loaded, Prepared, load, prepare};
use crate::network::{Dims, Network, outputs, score};
use crate::saved::{self, MANIFEST, Manifest, SavedModel, model_dir};

/// The `gaussmask train` job, run by the harness (config, run directory, checkpoints,
/// `--resume`).
pub struct Train;

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
    rows: Vec<MetricRow>,
    record: Vec<u8>,
    test: Option<(f64, f64)>,
}

/// The data of a run, read and prepared once per process (see [`TrainRun`]).
pub(crate) struct Job {
    pub(crate) config: JobConfig,
    pub(crate) loaded: Loaded,
    pub(crate) prepared: Prepared,
}

impl Job {
    /// Parses the config and reads, splits and standardizes the data: every input error is
    /// found here, before a run directory exists.
    pub(crate) fn new(table: &Table) -> Result<Self, HarnessError> {
        let config = JobConfig::from_table(table)?;
        let loaded = load(&config.data, config.seed).map_err(HarnessError::input)?;
        let prepared = prepare(&loaded, &config.data, config.seed).map_err(HarnessError::input)?;
        config
            .model
            .dense()
            .validate(loaded.shape)
            .map_err(HarnessError::input)?;
        if config.model.kind == crate::config::ModelKind::Cnn && loaded.shape[1] == 1 {
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
        Ok(Self {
            config,
            loaded,
            prepared,
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
    fn evaluate(&self, net: &Network, data: &Dataset, device: &Device) -> (f64, f64) {
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

    /// Trains model (κ, seed) from its checkpoint `key` (or from scratch).
    fn train_unit(
        &self,
        ctx: &RunContext,
        key: &str,
        kappa: f64,
        seed: u64,
        tick: impl FnMut(),
    ) -> Result<TrainedModel, HarnessError> {
        let device = ctx.device.clone().autodiff();
        let plain = ctx.device.clone();
        let train = &self.prepared.train;
        let settings = self.config.train.fit_config(train.n, seed);
        let model = self.network(kappa, seed, &device);
        let name = format!("κ = {}, seed {seed}", gaussmask_nn::kappa_label(kappa));
        let every = self.config.train.log_interval(train.n);
        let on_step = |fit: &Fit<Network>, rows: &mut Vec<MetricRow>| {
            let step = fit.step();
            if step.is_multiple_of(every) || step == fit.steps() {
                rows.push(self.row(&fit.model().valid(), kappa, seed, step, &plain));
            }
            Ok(())
        };
        let begin = |saved: Option<(&[u8], &_)>| {
            let fit = match saved {
                Some((bytes, _)) => Fit::resume(model, bytes, train, &settings, &device)
                    .map_err(|e| e.to_string())?,
                None => Fit::new(model, train, &settings, &device).map_err(|e| e.to_string())?,
            };
            Ok(Training::new(fit, name.as_str(), on_step))
        };
        let first_row = |t: &Training<'_, Network, Vec<MetricRow>, _>| {
            vec![self.row(&t.fit().model().valid(), kappa, seed, 0, &plain)]
        };
        let (training, rows) = ctx.run_resumable(key, &name, begin, first_row, tick)?;
        let run = training.into_fit();
        let trained = run.model().valid();
        let test = self
            .prepared
            .test
            .as_ref()
            .map(|t| self.evaluate(&trained, t, &plain));
        Ok(TrainedModel {
            rows,
            record: model_bytes(run.model())
                .map_err(|e| HarnessError::run(format!("{name}: {e}")))?,
            test,
        })
    }

    /// The manifest (`model.json`) of this job's trained `models`.
    fn manifest(&self, dtype: String, metric: &str, models: Vec<SavedModel>) -> Manifest {
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

/// `gaussmask train`'s config as the harness parses it: the resolved table, and the job that
/// `validate` reads and prepares from it (kept, so the data is read once per process).
#[derive(Serialize, Deserialize)]
pub struct TrainRun {
    #[serde(flatten)]
    table: Table,
    #[serde(skip)]
    job: Option<Arc<Job>>,
}

impl TrainRun {
    fn job(&self) -> &Job {
        self.job.as_ref().expect("validate prepares the job")
    }
}

/// The job of `table`, read and prepared on first use; the warnings and the run's size are
/// printed then.
fn prepared_job(table: &Table) -> Result<Arc<Job>, HarnessError> {
    static JOB: Mutex<Option<(Table, Arc<Job>)>> = Mutex::new(None);
    let mut kept = JOB.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, job)) = kept.as_ref()
        && t == table
    {
        return Ok(job.clone());
    }
    let job = Arc::new(Job::new(table)?);
    for w in &job.loaded.warnings {
        eprintln!("warning: {w}");
    }
    for &j in &job.prepared.constant {
        eprintln!(
            "warning: input '{}' is constant over the training rows: it is centred, not scaled",
            job.loaded.features[j]
        );
    }
    let c = &job.config;
    let train_n = job.prepared.train.n;
    eprintln!(
        "{} rows: {} training, {} validation{}; {} model(s) of {} steps",
        job.loaded.rows.n,
        train_n,
        job.prepared.validation.n,
        job.prepared
            .test
            .as_ref()
            .map(|t| format!(", {} test", t.n))
            .unwrap_or_default(),
        c.kappas.len() * c.train.seeds,
        c.train.fit_config(train_n, 0).steps
    );
    *kept = Some((table.clone(), job.clone()));
    Ok(job)
}

/// One model to train: its κ and seed.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    kappa: f64,
    seed: u64,
}

impl Study for Train {
    type Config = TrainRun;
    type Unit = ModelSpec;
    type Output = TrainedModel;

    fn id(&self) -> &'static str {
        "train"
    }

    fn about(&self) -> &'static str {
        "Masked training on your own data (CSV, .npy, IDX), one model per κ; see `gaussmask config train`"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/train.toml")
    }

    fn command(&self) -> String {
        "gaussmask train".into()
    }

    fn validate(&self, config: &mut TrainRun) -> Result<(), String> {
        config.job = Some(prepared_job(&config.table).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn units(&self, config: &TrainRun) -> Vec<Unit<ModelSpec>> {
        let c = &config.job().config;
        c.kappas
            .iter()
            .enumerate()
            .flat_map(|(i, &kappa)| {
                (0..c.train.seeds as u64).map(move |s| {
                    let seed = c.seed + s;
                    Unit::new(format!("k{i}-s{seed}"), ModelSpec { kappa, seed })
                })
            })
            .collect()
    }

    fn run_unit(
        &self,
        config: &TrainRun,
        unit: &Unit<ModelSpec>,
        ctx: &RunContext,
    ) -> Result<TrainedModel, HarnessError> {
        let job = config.job();
        let steps = job.config.train.fit_config(job.prepared.train.n, 0).steps;
        let bar = ctx.progress(steps as u64, &unit.key);
        let model = job.train_unit(ctx, &unit.key, unit.spec.kappa, unit.spec.seed, || {
            bar.inc(1)
        })?;
        bar.finish_and_clear();
        Ok(model)
    }

    fn reduce(
        &self,
        config: &TrainRun,
        outputs: Vec<(Unit<ModelSpec>, TrainedModel)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let done: Vec<(f64, u64, TrainedModel)> = outputs
            .into_iter()
            .map(|(u, model)| (u.spec.kappa, u.spec.seed, model))
            .collect();
        write_results(config.job(), ctx, &done)
    }
}

fn write_results(
    job: &Job,
    ctx: &RunContext,
    done: &[(f64, u64, TrainedModel)],
) -> Result<(), HarnessError> {
    let task = job.config.data.task;
    let metric = match task {
        Task::Regression => "mse",
        Task::Classification => "accuracy",
    };
    // metrics.csv: every logged evaluation of every model.
    let header: &[&str] = match task {
        Task::Regression => &["kappa", "seed", "epoch", "step", "train_mse", "val_mse"],
        Task::Classification => &[
            "kappa",
            "seed",
            "epoch",
            "step",
            "train_loss",
            "val_loss",
            "train_accuracy",
            "val_accuracy",
        ],
    };
    let mut metrics = csv_writer(header);
    for (_, _, unit) in done {
        for r in &unit.rows {
            let mut cells = vec![
                r.kappa.to_string(),
                r.seed.to_string(),
                r.epoch.to_string(),
                r.step.to_string(),
                cell(r.train_loss),
                cell(r.val_loss),
            ];
            if task == Task::Classification {
                cells.extend([cell(r.train_metric), cell(r.val_metric)]);
            }
            write_row(&mut metrics, &cells)?;
        }
    }
    ctx.write("metrics.csv", finish(metrics)?)?;

    // summary.csv: the final validation (and test) metric per κ, over the seeds.
    let has_test = done.iter().any(|(_, _, u)| u.test.is_some());
    let mut header = vec![
        "kappa".to_string(),
        "seeds".to_string(),
        format!("val_{metric}_mean"),
        format!("val_{metric}_std"),
        format!("train_{metric}_mean"),
    ];
    if has_test {
        header.extend([format!("test_{metric}_mean"), format!("test_{metric}_std")]);
    }
    let mut summary = csv_writer(&header.iter().map(String::as_str).collect::<Vec<_>>());
    let mut table = Vec::new();
    let mut models = Vec::new();
    for &kappa in &job.config.kappas {
        let of_kappa: Vec<&TrainedModel> = done
            .iter()
            .filter(|(k, _, _)| *k == kappa)
            .map(|(_, _, u)| u)
            .collect();
        let last = |f: fn(&MetricRow) -> f64| -> Vec<f64> {
            of_kappa
                .iter()
                .map(|u| f(u.rows.last().expect("a model logs its last step")))
                .collect()
        };
        let (val, val_sd) = mean_std(&last(|r| r.val_metric));
        let (train, _) = mean_std(&last(|r| r.train_metric));
        let mut cells = vec![
            kappa.to_string(),
            of_kappa.len().to_string(),
            cell(val),
            cell(val_sd),
            cell(train),
        ];
        let test: Vec<f64> = of_kappa
            .iter()
            .filter_map(|u| u.test.map(|t| t.1))
            .collect();
        let (test_mean, test_sd) = mean_std(&test);
        if has_test {
            cells.extend([cell(test_mean), cell(test_sd)]);
        }
        write_row(&mut summary, &cells)?;
        table.push((kappa, train, val, val_sd, has_test.then_some(test_mean)));
    }
    ctx.write("summary.csv", finish(summary)?)?;

    // The models, and the manifest predict reads.
    for (kappa, seed, unit) in done {
        let dir = model_dir(*kappa, *seed);
        let net = load_model_bytes(job.network(*kappa, *seed, &ctx.device), &unit.record)
            .map_err(|e| HarnessError::run(format!("{dir}: {e}")))?
            .map(&mut NumberParams(0));
        let record = model_bytes(&net).map_err(|e| HarnessError::run(format!("{dir}: {e}")))?;
        // One metadata entry: safetensors keeps them in a hash map, so several would come out
        // in a different order in every process.
        let mut store = SafetensorsStore::from_bytes(None)
            .clear_metadata()
            .metadata("producer", concat!("gaussmask ", env!("CARGO_PKG_VERSION")));
        net.valid()
            .save_into(&mut store)
            .map_err(|e| HarnessError::run(format!("{dir}/model.safetensors: {e}")))?;
        let tensors = store
            .get_bytes()
            .map_err(|e| HarnessError::run(format!("{dir}/model.safetensors: {e}")))?;
        let sha256 = [("model.bpk", &record), ("model.safetensors", &tensors)]
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), sha256_hex(bytes)))
            .collect();
        ctx.write(&format!("{dir}/model.bpk"), record)?;
        ctx.write(&format!("{dir}/model.safetensors"), tensors)?;
        let last = unit.rows.last().expect("a model logs its last step");
        models.push(SavedModel {
            kappa: *kappa,
            seed: *seed,
            dir,
            val_metric: last.val_metric,
            test_metric: unit.test.map(|t| t.1),
            sha256,
        });
    }
    let manifest = job.manifest(ctx.dtype.to_string(), metric, models);
    ctx.write_json(MANIFEST, &manifest)?;
    ctx.plot(&learning_curves(job, done, metric), "learning_curve")?;

    println!(
        "{:>8} {:>14} {:>14} {:>12}{}",
        "kappa",
        format!("train {metric}"),
        format!("val {metric}"),
        "val sd",
        if has_test {
            format!(" {:>14}", format!("test {metric}"))
        } else {
            String::new()
        }
    );
    for (kappa, train, val, sd, test) in table {
        println!(
            "{kappa:>8} {train:>14.4} {val:>14.4} {sd:>12.4}{}",
            test.map(|t| format!(" {t:>14.4}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// Validation (solid) and training (dashed) metric against epochs, the mean over seeds, one
/// colour per κ.
fn learning_curves(job: &Job, done: &[(f64, u64, TrainedModel)], metric: &str) -> LinePlot {
    let mut series = Vec::new();
    for (i, &kappa) in job.config.kappas.iter().enumerate() {
        let units: Vec<&TrainedModel> = done
            .iter()
            .filter(|(k, _, _)| *k == kappa)
            .map(|(_, _, u)| u)
            .collect();
        let mean_of = |f: fn(&MetricRow) -> f64| -> Vec<(f64, f64)> {
            (0..units[0].rows.len())
                .map(|j| {
                    let values: Vec<f64> = units.iter().map(|u| f(&u.rows[j])).collect();
                    (units[0].rows[j].epoch, mean_std(&values).0)
                })
                .collect()
        };
        if job.prepared.validation.n > 0 {
            series.push(Series {
                label: format!("κ = {kappa} validation"),
                points: mean_of(|r| r.val_metric),
                color: Some(i),
                ..Series::default()
            });
        }
        series.push(Series {
            label: format!("κ = {kappa} training"),
            points: mean_of(|r| r.train_metric),
            dashed: true,
            color: Some(i),
            ..Series::default()
        });
    }
    LinePlot {
        title: format!(
            "{} on {} ({}, clean inputs)",
            metric, job.loaded.target, job.config.model.kind
        ),
        x_label: "epoch".into(),
        y_label: metric.into(),
        log_y: metric == "mse",
        series,
        ..LinePlot::default()
    }
}

/// Gives the parameters the ids 1, 2, … in visiting order: Burn draws a random id for each
/// parameter and records it, so without this the same model would be different bytes in every
/// process (and a resumed run's models would differ from an uninterrupted run's).
struct NumberParams(u64);

impl NumberParams {
    fn next(&mut self) -> ParamId {
        self.0 += 1;
        ParamId::from(self.0)
    }
}

impl ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.next(), value, mapper)
    }
}

fn cell(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        v.to_string()
    }
}

fn csv_writer(header: &[&str]) -> csv::Writer<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("writing to memory");
    w
}

fn write_row(w: &mut csv::Writer<Vec<u8>>, cells: &[String]) -> Result<(), HarnessError> {
    w.write_record(cells)
        .map_err(|e| HarnessError::run(format!("cannot write a CSV row: {e}")))
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, HarnessError> {
    w.into_inner()
        .map_err(|e| HarnessError::run(format!("cannot write a CSV table: {e}")))
}
