//! `gaussmask audit`: the membership privacy of masked training on the user's own data,
//! measured as the privacy field measures it. It takes `gaussmask train`'s config; for every κ
//! of `model.mask.kappa` it trains `shadows` models, each on a seeded half of the training
//! part (so every row is a member of about half of them, with DP-SGD when `[train.dp]` is
//! set), and runs LiRA (`gaussmask_privacy::lira`) with each model in turn as the target and
//! the others as its shadows, on the clean rows and on `queries` masked copies of them at the
//! training κ. It leaves `audit.csv` (per κ: the validation metric, AUC, TPR at 0.1% and 1%
//! FPR with Wilson intervals, ε under DP-SGD), the log-log ROC and the utility–exposure
//! frontier.

use std::sync::Arc;

use burn::module::Module;
use gaussmask_core::rng::{Stream, derive_seed, tag};
use gaussmask_data::Dataset;
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, InputError, RunContext, Study, Unit};
use gaussmask_privacy::lira::{
    Rate, Reading, log_error_confidence, logit_confidence, member_halves, read_queries,
};
use serde::{Deserialize, Serialize};
use toml::Table;

use crate::config::Task;
use crate::data::subset;
use crate::job::Job;
use crate::network::{Network, outputs};
use crate::results::{cell, csv_writer, finish, write_row};
use crate::train::{Purpose, prepared_job};

/// The `gaussmask audit` job, run by the harness (config, run directory, checkpoints,
/// `--resume`, `--shard`).
pub struct Audit;

/// The optional `[audit]` table of the config (`--shadows N` sets `audit.shadows`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Models per κ, each the target once and the others its shadows.
    #[serde(default = "default_shadows")]
    pub shadows: usize,
    /// Masked copies of each row the attacker queries at the training κ, besides the clean row.
    #[serde(default = "default_queries")]
    pub queries: usize,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            shadows: default_shadows(),
            queries: default_queries(),
        }
    }
}

/// The config's `[audit]` table alone.
#[derive(Deserialize)]
struct AuditTable {
    #[serde(default)]
    audit: AuditSection,
}

fn default_shadows() -> usize {
    16
}
fn default_queries() -> usize {
    4
}

impl AuditSection {
    fn validate(&self) -> Result<(), String> {
        require(
            self.shadows >= 4,
            "audit.shadows (--shadows)",
            "≥ 4 (a target, and shadows that did and did not train on each row)",
            self.shadows,
        )
    }
}

/// `gaussmask audit`'s config as the harness parses it: `gaussmask train`'s table with an
/// optional `[audit]` table, and what `validate` prepares from it.
#[derive(Serialize, Deserialize)]
pub struct AuditRun {
    #[serde(flatten)]
    table: Table,
    #[serde(skip)]
    prepared: Option<(AuditSection, Arc<Job>)>,
}

impl AuditRun {
    fn section(&self) -> &AuditSection {
        &self.prepared.as_ref().expect("validate prepares the job").0
    }

    fn job(&self) -> &Job {
        &self.prepared.as_ref().expect("validate prepares the job").1
    }
}

/// One model of the audit: its κ (and the κ's index), and its index among the κ's models.
#[derive(Clone, Copy, Debug)]
pub struct ShadowSpec {
    kappa_index: usize,
    kappa: f64,
    model: usize,
}

/// What one trained model gives the attack.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShadowEval {
    /// φ of every row of the training part, clean query.
    pub phi_clean: Vec<f64>,
    /// φ of every row, mean over the masked queries (the clean φ at κ = 0).
    pub phi_masked: Vec<f64>,
    /// The validation metric (MSE in the target's units, or accuracy), mask off.
    pub val_metric: f64,
}

/// φ of every row of `data` on the evaluation model `net`: the logit-scaled confidence of the
/// true class, or −ln of the squared error for regression.
fn phis(job: &Job, net: &Network, data: &Dataset, ctx: &RunContext) -> Vec<f64> {
    let out = outputs(net, data, &ctx.device);
    match job.config.data.task {
        Task::Regression => out
            .iter()
            .zip(&data.y)
            .map(|(&f, &y)| log_error_confidence(f, y))
            .collect(),
        Task::Classification => out
            .chunks_exact(job.dims().outputs)
            .zip(&data.y)
            .map(|(row, &y)| logit_confidence(row, y as usize))
            .collect(),
    }
}

impl Study for Audit {
    type Config = AuditRun;
    type Unit = ShadowSpec;
    type Output = ShadowEval;

    fn id(&self) -> &'static str {
        "audit"
    }

    fn about(&self) -> &'static str {
        "Membership privacy of masked training on your own data (LiRA over shadow models); takes `gaussmask train`'s config"
    }

    fn default_config(&self) -> &'static str {
        concat!(
            include_str!("../../../configs/train.toml"),
            "\n",
            include_str!("../../../configs/audit.toml")
        )
    }

    fn command(&self) -> String {
        "gaussmask audit".into()
    }

    fn validate(&self, config: &mut AuditRun) -> Result<(), InputError> {
        let mut table = config.table.clone();
        // Parsed as its own table, so that toml's message names `audit.<field>`.
        let mut own = Table::new();
        if let Some(audit) = table.remove("audit") {
            own.insert("audit".into(), audit);
        }
        let section = parse::<AuditTable>(&own).map_err(|e| e.to_string())?.audit;
        section.validate()?;
        let purpose = Purpose::Audit {
            shadows: section.shadows,
        };
        let job = prepared_job(&table, purpose).map_err(|e| e.to_string())?;
        config.prepared = Some((section, job));
        Ok(())
    }

    fn units(&self, config: &AuditRun) -> Vec<Unit<ShadowSpec>> {
        let shadows = config.section().shadows;
        config
            .job()
            .config
            .kappas
            .iter()
            .enumerate()
            .flat_map(|(kappa_index, &kappa)| {
                (0..shadows).map(move |model| {
                    Unit::new(
                        format!("k{kappa_index}-m{model}"),
                        ShadowSpec {
                            kappa_index,
                            kappa,
                            model,
                        },
                    )
                })
            })
            .collect()
    }

    fn run_unit(
        &self,
        config: &AuditRun,
        unit: &Unit<ShadowSpec>,
        ctx: &RunContext,
    ) -> Result<ShadowEval, HarnessError> {
        let job = config.job();
        let spec = unit.spec;
        let pool = &job.prepared.train;
        let member = member_halves(pool.n, job.config.seed, spec.model);
        let rows: Vec<usize> = (0..pool.n).filter(|&i| member[i]).collect();
        let members = subset(pool, &rows);
        let steps = job.config.train.fit_config(members.n, 0).steps;
        let bar = ctx.progress(steps as u64, &unit.key);
        let seed = job.config.seed + spec.model as u64;
        let (model, _) =
            job.train_model(ctx, &unit.key, (spec.kappa, seed), &members, false, || {
                bar.inc(1)
            })?;
        bar.finish_and_clear();
        let net = model.valid();
        let phi_clean = phis(job, &net, pool, ctx);
        // The attacker's masked copies, drawn from the config's mask family from a stream of
        // the κ, the model and the query (the same for every run of the unit).
        let queries = config.section().queries;
        let phi_masked = if spec.kappa == 0.0 || queries == 0 {
            phi_clean.clone()
        } else {
            let mut sum = vec![0.0; pool.n];
            let mut c = vec![0.0; pool.x.len()];
            for k in 0..queries {
                let path = [spec.kappa_index as u64, spec.model as u64, k as u64];
                let mut stream = Stream::new(
                    derive_seed(job.config.seed, tag::MONTE_CARLO, &path),
                    tag::MASK,
                );
                job.config.model.mask.fill(spec.kappa, &mut stream, &mut c);
                let mut masked = pool.clone();
                masked.x.iter_mut().zip(&c).for_each(|(x, c)| *x *= c);
                for (s, p) in sum.iter_mut().zip(phis(job, &net, &masked, ctx)) {
                    *s += p;
                }
            }
            sum.iter().map(|s| s / queries as f64).collect()
        };
        let (_, val_metric) = job.evaluate(&net, &job.prepared.validation, &ctx.device);
        Ok(ShadowEval {
            phi_clean,
            phi_masked,
            val_metric,
        })
    }

    fn reduce(
        &self,
        config: &AuditRun,
        outputs: Vec<(Unit<ShadowSpec>, ShadowEval)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let job = config.job();
        let pool = job.prepared.train.n;
        let mut rows = Vec::new();
        let mut curves = Vec::new();
        for (i, &kappa) in job.config.kappas.iter().enumerate() {
            let evals: Vec<(usize, &ShadowEval)> = outputs
                .iter()
                .filter(|(u, _)| u.spec.kappa_index == i)
                .map(|(u, e)| (u.spec.model, e))
                .collect();
            let member: Vec<Vec<bool>> = evals
                .iter()
                .map(|(m, _)| member_halves(pool, job.config.seed, *m))
                .collect();
            let val_metric =
                evals.iter().map(|(_, e)| e.val_metric).sum::<f64>() / evals.len() as f64;
            let (clean, masked): (Vec<Vec<f64>>, Vec<Vec<f64>>) = evals
                .iter()
                .map(|(_, e)| (e.phi_clean.clone(), e.phi_masked.clone()))
                .unzip();
            let (readings, roc) = read_queries(&clean, &masked, &member);
            curves.push((format!("κ = {}", gaussmask_nn::kappa_label(kappa)), roc));
            rows.extend(readings.into_iter().map(|reading| AuditRow {
                kappa,
                val_metric,
                reading,
            }));
        }
        print_table(job, &rows);
        write_outputs(job, &rows, curves, ctx)
    }
}

/// One line of `audit.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    /// The models' mask level.
    pub kappa: f64,
    /// Mean validation metric of the κ's models.
    pub val_metric: f64,
    /// LiRA's reading at one query and variant.
    #[serde(flatten)]
    pub reading: Reading,
}

/// The online LiRA rows with masked queries (the strongest attack here), one line per κ.
fn print_table(job: &Job, rows: &[AuditRow]) {
    let metric = job.config.data.task.metric();
    eprintln!(
        "{:>8}  {:>12}  {:>6}  {:>22}  {:>22}",
        "κ",
        format!("val {metric}"),
        "AUC",
        "TPR at 0.1% FPR",
        "TPR at 1% FPR"
    );
    let interval = |r: &Rate| format!("{:.4} [{:.4}, {:.4}]", r.value, r.low, r.high);
    for r in rows
        .iter()
        .filter(|r| r.reading.variant == "online" && r.reading.query == "masked")
    {
        eprintln!(
            "{:>8}  {:>12.4}  {:>6.3}  {:>22}  {:>22}",
            gaussmask_nn::kappa_label(r.kappa),
            r.val_metric,
            r.reading.auc,
            interval(&r.reading.tpr_at_0_1pct),
            interval(&r.reading.tpr_at_1pct)
        );
    }
}

fn write_outputs(
    job: &Job,
    rows: &[AuditRow],
    curves: Vec<(String, Vec<(f64, f64)>)>,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let metric = job.config.data.task.metric();
    let val = format!("val_{metric}");
    let mut csv = csv_writer(&[
        "kappa",
        "noise_multiplier",
        "epsilon",
        "query",
        "variant",
        &val,
        "auc",
        "tpr_0_1pct",
        "tpr_0_1pct_low",
        "tpr_0_1pct_high",
        "tpr_1pct",
        "tpr_1pct_low",
        "tpr_1pct_high",
    ]);
    let privacy = job.privacy.as_ref();
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        write_row(
            &mut csv,
            &[
                r.kappa.to_string(),
                optional(privacy.map(|p| p.noise_multiplier)),
                optional(privacy.and_then(|p| p.epsilon)),
                r.reading.query.into(),
                r.reading.variant.into(),
                cell(r.val_metric),
                cell(r.reading.auc),
                r.reading.tpr_at_0_1pct.value.to_string(),
                r.reading.tpr_at_0_1pct.low.to_string(),
                r.reading.tpr_at_0_1pct.high.to_string(),
                r.reading.tpr_at_1pct.value.to_string(),
                r.reading.tpr_at_1pct.low.to_string(),
                r.reading.tpr_at_1pct.high.to_string(),
            ],
        )?;
    }
    ctx.write("audit.csv", finish(csv)?)?;
    if let Some(privacy) = privacy {
        ctx.write_json("privacy.json", privacy)?;
    }
    let dp = if privacy.is_some() { ", DP-SGD" } else { "" };
    ctx.plot(
        &LinePlot::log_log_roc(
            &format!(
                "LiRA (online, masked queries) on {}{dp}: ROC",
                job.loaded.target
            ),
            curves,
        ),
        "roc",
    )?;
    let frontier = rows
        .iter()
        .filter(|r| r.reading.variant == "online" && r.reading.query == "masked")
        .map(|r| (r.reading.tpr_at_0_1pct.value, r.val_metric))
        .collect();
    ctx.plot(
        &LinePlot {
            title: format!("validation {metric} against membership exposure, one point per κ{dp}"),
            x_label: "LiRA TPR at 0.1% FPR (online, masked queries)".into(),
            y_label: format!("validation {metric}"),
            series: vec![Series {
                label: "input mask (κ)".into(),
                points: frontier,
                ..Series::default()
            }],
            legend_left: true,
            ..LinePlot::default()
        },
        "frontier",
    )
}
