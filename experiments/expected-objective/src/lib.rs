//! Experiment `expected-objective`: the trajectories setting trained three ways side by side —
//! masked GD (one fresh mask per step), GD on the exact expected loss (A), and GD on the proxy
//! objective (B) — to see whether the analytic runs level off near the masked floor without the
//! jitter.

use std::time::Instant;

use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Backend, Experiment, HarnessError, RunContext};
use gaussmask_sweep::{Curve, TrajectoriesConfig, seed_mean, summarize, train_curves};
use gaussmask_train::Objective;
use serde::{Deserialize, Serialize};
use toml::Table;

/// Config of the experiment (`configs/expected-objective.toml`): a trajectories config plus the
/// objectives to compare.
#[derive(Clone, Debug)]
pub struct ExpectedObjectiveConfig {
    /// Objectives trained side by side.
    pub objectives: Vec<Objective>,
    /// The training setting (its `train.objective` is replaced by each of `objectives`).
    pub base: TrajectoriesConfig,
}

impl ExpectedObjectiveConfig {
    /// Parses a resolved config table and checks every value.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut t = table.clone();
        let objectives = t
            .remove("objectives")
            .ok_or_else(|| HarnessError::input("config: missing field `objectives`"))?;
        let base = TrajectoriesConfig::from_table(&t)?;
        let mut only = Table::new();
        only.insert("objectives".into(), objectives);
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Objectives {
            objectives: Vec<Objective>,
        }
        let o: Objectives = parse(&only)?;
        require(
            !o.objectives.is_empty(),
            "objectives",
            "a non-empty list",
            "[]",
        )
        .map_err(HarnessError::input)?;
        Ok(Self {
            objectives: o.objectives,
            base,
        })
    }
}

/// Per (objective, κ) summary.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Objective.
    pub objective: Objective,
    /// Mask level.
    pub kappa: f64,
    /// Floor: mean clean loss over the last 20% of steps (seed mean).
    pub floor: f64,
    /// Final clean loss (seed mean).
    pub final_clean: f64,
    /// RMS of the step-to-step changes of the seed-mean curve over the last 20% of steps.
    pub tail_jitter: f64,
    /// Wall time of this objective's training (all κ and seeds), seconds.
    pub train_time_s: f64,
    /// Wall time per step and replica, milliseconds.
    pub ms_per_step: f64,
}

/// The experiment.
pub struct ExpectedObjective;

impl Experiment for ExpectedObjective {
    fn id(&self) -> &'static str {
        "expected-objective"
    }

    fn about(&self) -> &'static str {
        "GD on the exact expected loss (A) and on the proxy (B) against masked GD"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/expected-objective.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        ExpectedObjectiveConfig::from_table(config).map(|_| ())
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let config = ExpectedObjectiveConfig::from_table(config)?;
        let mut runs: Vec<(Objective, Vec<Curve>, f64)> = Vec::new();
        for &objective in &config.objectives {
            let mut c = config.base.clone();
            c.train.objective = objective;
            let started = Instant::now();
            let curves = train_curves(&c, ctx)?;
            runs.push((objective, curves, started.elapsed().as_secs_f64()));
        }
        let rows = summarize_runs(&config, &runs, ctx.backend);
        write_outputs(&config, &runs, &rows, ctx)?;
        print_table(&rows);
        Ok(())
    }
}

fn summarize_runs(
    config: &ExpectedObjectiveConfig,
    runs: &[(Objective, Vec<Curve>, f64)],
    backend: Backend,
) -> Vec<Row> {
    let base = &config.base;
    let replicas = (base.kappas.len() * base.seeds) as f64;
    let mut rows = Vec::new();
    for (objective, curves, time) in runs {
        let mut c = base.clone();
        c.train.objective = *objective;
        let engine = c.train.resolved_engine(backend.is_gpu());
        let summary = summarize(base, curves, c.chunk_size(backend), engine, *time);
        for (k, group) in summary.kappas.iter().zip(curves.chunks(base.seeds)) {
            let mean = seed_mean(group, |c| &c.clean);
            let len = mean.len();
            // RMS of the step-to-step changes over the last 20%: noise, not the slow trend.
            let tail = &mean[len - (len / 5).max(2)..];
            let diffs: Vec<f64> = tail.windows(2).map(|w| w[1] - w[0]).collect();
            let jitter = (diffs.iter().map(|v| v * v).sum::<f64>() / diffs.len() as f64).sqrt();
            rows.push(Row {
                objective: *objective,
                kappa: k.kappa,
                floor: k.floor,
                final_clean: k.final_clean_mean,
                tail_jitter: jitter,
                train_time_s: *time,
                ms_per_step: 1e3 * time / (replicas * base.train.steps as f64),
            });
        }
    }
    rows
}

fn name(o: Objective) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{o:?}"))
}

fn write_outputs(
    config: &ExpectedObjectiveConfig,
    runs: &[(Objective, Vec<Curve>, f64)],
    rows: &[Row],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let base = &config.base;
    let mut csv = Csv::new(&[
        "objective",
        "kappa",
        "seed",
        "step",
        "clean_loss",
        "objective_value",
    ]);
    for (objective, curves, _) in runs {
        for (rep, curve) in base.replicas().iter().zip(curves) {
            for i in 0..curve.steps.len() {
                csv.row(&[
                    name(*objective),
                    rep.kappa.to_string(),
                    rep.seed.to_string(),
                    curve.steps[i].to_string(),
                    curve.clean[i].to_string(),
                    curve.masked[i].to_string(),
                ]);
            }
        }
    }
    ctx.write("expected_objective.csv", csv.into_bytes())?;
    ctx.write_json("summary.json", &rows)?;
    for (ki, &kappa) in base.kappas.iter().enumerate() {
        let series = runs
            .iter()
            .map(|(objective, curves, _)| {
                let group = &curves[ki * base.seeds..(ki + 1) * base.seeds];
                let steps = group[0].steps.iter().map(|&s| s as f64);
                let points = steps.zip(seed_mean(group, |c| &c.clean)).collect();
                Series {
                    label: name(*objective),
                    points,
                    band: None,
                    dashed: false,
                    color: None,
                }
            })
            .collect();
        let plot = LinePlot {
            title: format!(
                "Clean loss by objective, κ = {kappa} (n={}, m={}, lr={}, {} seed(s))",
                base.data.n, base.model.width, base.train.lr, base.seeds
            ),
            x_label: "step".into(),
            y_label: "clean loss ½Σ(f − y)²".into(),
            log_y: true,
            series,
            ..Default::default()
        };
        ctx.plot(&plot, &format!("expected_objective_kappa{kappa}"))?;
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:>16}  {:>6}  {:>12}  {:>12}  {:>11}  {:>12}",
        "objective", "kappa", "floor", "final clean", "tail jitter", "ms/step/rep"
    );
    for r in rows {
        println!(
            "{:>16}  {:>6}  {:>12.5e}  {:>12.5e}  {:>11.3e}  {:>12.3}",
            name(r.objective),
            r.kappa,
            r.floor,
            r.final_clean,
            r.tail_jitter,
            r.ms_per_step
        );
    }
}
