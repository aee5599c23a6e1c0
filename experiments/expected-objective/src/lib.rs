//! Experiment `expected-objective`: the trajectories setting trained three ways side by side —
//! masked GD (one fresh mask per step), GD on the exact expected loss (A), and GD on the proxy
//! objective (B) — to see whether the analytic runs level off near the masked floor without the
//! jitter.

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Backend, HarnessError, RunContext, Study, Timed, Unit};
use gaussmask_sweep::{Curve, SweepConfig, seed_mean, summarize, train_curves};
use gaussmask_train::Objective;
use serde::{Deserialize, Serialize};

mod tables;

/// Config of the experiment (`configs/expected-objective.toml`): a trajectories config plus the
/// objectives to compare.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpectedObjectiveConfig {
    /// Objectives trained side by side.
    pub objectives: Vec<Objective>,
    /// The training setting (its `train.objective` is replaced by each of `objectives`;
    /// unknown keys are refused there).
    #[serde(flatten)]
    pub base: SweepConfig,
}

impl ExpectedObjectiveConfig {
    /// Checks every value and fills the defaults.
    pub fn validate(&mut self) -> Result<(), String> {
        require(
            !self.objectives.is_empty(),
            "objectives",
            "a non-empty list",
            "[]",
        )?;
        require_distinct(
            "objectives",
            &self.objectives.iter().map(|&o| name(o)).collect::<Vec<_>>(),
        )?;
        self.base.resolve()
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

impl Study for ExpectedObjective {
    type Config = ExpectedObjectiveConfig;
    type Unit = Objective;
    type Output = Timed<Vec<Curve>>;

    fn id(&self) -> &'static str {
        "expected-objective"
    }

    fn about(&self) -> &'static str {
        "GD on the exact expected loss (A) and on the proxy (B) against masked GD"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/expected-objective.toml")
    }

    fn validate(&self, config: &mut ExpectedObjectiveConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, config: &ExpectedObjectiveConfig) -> Vec<Unit<Objective>> {
        config
            .objectives
            .iter()
            .map(|&o| Unit::new(format!("objective={}", name(o)), o))
            .collect()
    }

    fn run_unit(
        &self,
        config: &ExpectedObjectiveConfig,
        unit: &Unit<Objective>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<Curve>>, HarnessError> {
        let mut c = config.base.clone();
        c.train.objective = unit.spec;
        Timed::run(|| train_curves(&c, ctx))
    }

    fn reduce(
        &self,
        config: &ExpectedObjectiveConfig,
        outputs: Vec<(Unit<Objective>, Timed<Vec<Curve>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let runs: Vec<(Objective, Vec<Curve>, f64)> = outputs
            .into_iter()
            .map(|(unit, t)| (unit.spec, t.value, t.seconds))
            .collect();
        let rows = summarize_runs(config, &runs, ctx.backend);
        write_outputs(config, &runs, &rows, ctx)?;
        print_table(&rows);
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `expected_objective.csv`.
#[derive(Serialize)]
struct CurveRow {
    objective: Objective,
    kappa: f64,
    seed: u64,
    step: usize,
    clean_loss: f64,
    objective_value: f64,
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
    let mut csv = Vec::new();
    for (objective, curves, _) in runs {
        for (rep, curve) in base.replicas().iter().zip(curves) {
            for i in 0..curve.steps.len() {
                csv.push(CurveRow {
                    objective: *objective,
                    kappa: rep.kappa,
                    seed: rep.seed,
                    step: curve.steps[i],
                    clean_loss: curve.clean[i],
                    objective_value: curve.masked[i],
                });
            }
        }
    }
    ctx.write_csv("expected_objective.csv", &csv)?;
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
