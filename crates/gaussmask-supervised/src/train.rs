//! `gaussmask train` as a [`Study`]: one unit per (κ, seed) on the user's data, each kept once
//! done, then the run directory ([`crate::results`]).

use std::sync::{Arc, Mutex};

use gaussmask_harness::InputError;
use gaussmask_harness::config::require;
use gaussmask_harness::{HarnessError, RunContext, Study, Unit};
use serde::{Deserialize, Serialize};
use toml::Table;

use crate::job::{Job, TrainedModel};
use crate::results::write_results;

/// The `gaussmask train` job, run by the harness (config, run directory, checkpoints,
/// `--resume`).
pub struct Train;

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

/// What a job is prepared for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `gaussmask train`: `train.seeds` models per κ, each on the whole training part.
    Train,
    /// `gaussmask audit`: `shadows` models per κ, each on a seeded half of the training part.
    Audit {
        /// Models per κ.
        shadows: usize,
    },
}

impl Purpose {
    /// Rows each model trains on, of the training part's `n`.
    pub(crate) fn model_rows(self, n: usize) -> usize {
        match self {
            Purpose::Train => n,
            Purpose::Audit { .. } => n / 2,
        }
    }

    /// What the purpose needs of the prepared data.
    fn check(self, job: &Job) -> Result<(), String> {
        if let Purpose::Audit { .. } = self {
            require(
                job.prepared.train.n >= 4,
                "data",
                "4 or more training rows for an audit (each model trains on half of them)",
                job.prepared.train.n,
            )?;
            require(
                job.prepared.validation.n >= 1,
                "data.validation",
                "> 0 for an audit (the validation metric is the utility it reports)",
                job.config.data.validation,
            )?;
        }
        Ok(())
    }
}

/// The job of `table` for `purpose`, read and prepared on first use; the warnings and the
/// run's size are printed then.
pub(crate) fn prepared_job(table: &Table, purpose: Purpose) -> Result<Arc<Job>, HarnessError> {
    type Kept = Option<(Table, Purpose, Arc<Job>)>;
    static JOB: Mutex<Kept> = Mutex::new(None);
    let mut kept = JOB.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, p, job)) = kept.as_ref()
        && t == table
        && *p == purpose
    {
        return Ok(job.clone());
    }
    let job = Arc::new(Job::new(table, |n| purpose.model_rows(n))?);
    purpose.check(&job).map_err(HarnessError::input)?;
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
    let models = match purpose {
        Purpose::Train => c.train.seeds,
        Purpose::Audit { shadows } => {
            if c.train.seeds != 1 {
                eprintln!(
                    "warning: train.seeds = {} is not used by gaussmask audit: it trains \
                     --shadows models per κ",
                    c.train.seeds
                );
            }
            shadows
        }
    };
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
        c.kappas.len() * models,
        c.train.fit_config(purpose.model_rows(train_n), 0).steps
    );
    if let Some(p) = &job.privacy {
        eprintln!(
            "DP-SGD: Poisson sampling at q = {:.4}, clip {}, noise multiplier {:.4}: ε = {} at \
             δ = {} ({})",
            p.sampling_rate,
            p.clip,
            p.noise_multiplier,
            p.epsilon.map_or("∞".into(), |e| format!("{e:.3}")),
            p.delta,
            p.accountant
        );
    }
    *kept = Some((table.clone(), purpose, job.clone()));
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

    fn validate(&self, config: &mut TrainRun) -> Result<(), InputError> {
        config.job = Some(prepared_job(&config.table, Purpose::Train).map_err(|e| e.to_string())?);
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
