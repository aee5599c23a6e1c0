//! Experiment `trajectories` (paper Fig. 3): clean training loss of masked full-batch GD for a
//! grid of κ, several seeds each. One unit of work per κ: its seeds are trained side by side.

use gaussmask_harness::InputError;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit};
use gaussmask_sweep::{
    Curve, KappaRuns, Summary, SweepConfig, lambda0, save_weights, seed_mean, summarize,
    train_kappa,
};
use serde::Serialize;

mod tables;

/// The experiment: one unit of work per κ (its seeds trained side by side).
pub struct Trajectories;

impl Study for Trajectories {
    type Config = SweepConfig;
    type Unit = f64;
    type Output = Timed<KappaRuns>;

    fn id(&self) -> &'static str {
        "trajectories"
    }

    fn about(&self) -> &'static str {
        "Fig. 3: clean loss of masked GD over steps for a κ grid (the main job)"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/trajectories.toml")
    }

    fn validate(&self, config: &mut SweepConfig) -> Result<(), InputError> {
        Ok(config.resolve()?)
    }

    fn has_diagnostics(&self) -> bool {
        true
    }

    fn units(&self, config: &SweepConfig) -> Vec<Unit<f64>> {
        config
            .kappas
            .iter()
            .map(|&kappa| Unit::new(format!("kappa={}", gaussmask_nn::kappa_label(kappa)), kappa))
            .collect()
    }

    fn run_unit(
        &self,
        config: &SweepConfig,
        unit: &Unit<f64>,
        ctx: &RunContext,
    ) -> Result<Timed<KappaRuns>, HarnessError> {
        train_kappa(config, unit.spec, &config.data.generate(), ctx)
    }

    fn reduce(
        &self,
        config: &SweepConfig,
        outputs: Vec<(Unit<f64>, Timed<KappaRuns>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let mut curves = Vec::new();
        let mut weights = Vec::new();
        for (_, runs) in outputs {
            curves.extend(runs.value.curves);
            weights.extend(runs.value.weights);
        }
        if ctx.save_weights {
            save_weights(&config.replicas(), &weights, config, ctx)?;
        }
        let chunk = config.chunk_size(ctx.backend).min(config.seeds);
        let engine = config.train.resolved_engine(ctx.backend.is_gpu());
        let summary = summarize(config, &curves, chunk, engine, train_time_s);
        write_outputs(config, &curves, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One row of `trajectories.csv`.
#[derive(Serialize)]
struct TrajectoryRow {
    kappa: f64,
    seed: u64,
    step: usize,
    clean_loss: f64,
    masked_loss: f64,
    clean_mse: f64,
}

/// One row of `diagnostics.csv`.
#[derive(Serialize)]
struct DiagnosticsRow {
    kappa: f64,
    seed: u64,
    step: usize,
    relative_movement: f64,
    flipped_fraction: f64,
    lambda_min_gram: Option<f64>,
}

fn write_outputs(
    config: &SweepConfig,
    curves: &[Curve],
    summary: &Summary,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let n = config.data.n as f64;
    let mut rows = Vec::new();
    for (rep, curve) in config.replicas().iter().zip(curves) {
        for i in 0..curve.steps.len() {
            rows.push(TrajectoryRow {
                kappa: rep.kappa,
                seed: rep.seed,
                step: curve.steps[i],
                clean_loss: curve.clean[i],
                masked_loss: curve.masked[i],
                clean_mse: 2.0 * curve.clean[i] / n,
            });
        }
    }
    ctx.write_csv("trajectories.csv", &rows)?;
    ctx.write_json("summary.json", summary)?;
    if curves.iter().any(|c| !c.diagnostics.is_empty()) {
        write_diagnostics(config, curves, ctx)?;
    }

    let series = config
        .kappas
        .iter()
        .zip(curves.chunks(config.seeds))
        .map(|(&kappa, group)| {
            let steps = &group[0].steps;
            let mean = seed_mean(group, |c| &c.clean);
            let band = (0..steps.len())
                .map(|i| {
                    let vals = group.iter().map(|c| c.clean[i]);
                    (
                        vals.clone().fold(f64::INFINITY, f64::min),
                        vals.fold(f64::NEG_INFINITY, f64::max),
                    )
                })
                .collect();
            Series {
                label: format!("κ = {kappa}"),
                points: steps.iter().map(|&s| s as f64).zip(mean).collect(),
                band: (config.seeds > 1).then_some(band),
                dashed: false,
                color: None,
            }
        })
        .collect();
    let plot = LinePlot {
        title: format!(
            "Masked GD: clean training loss (n={}, d={}, m={}, lr={}, {} seeds)",
            config.data.n, config.data.d, config.model.width, config.train.lr, config.seeds
        ),
        x_label: "step".into(),
        y_label: "clean loss ½Σ(f − y)²".into(),
        log_y: true,
        log_x: false,
        series,
        legend_left: false,
    };
    ctx.plot(&plot, "trajectories")
}

/// `diagnostics.csv` (one row per replica and diagnostics step), `ntk.json` (λ₀ of the data)
/// and a figure of the relative weight movement.
fn write_diagnostics(
    config: &SweepConfig,
    curves: &[Curve],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut rows = Vec::new();
    for (rep, curve) in config.replicas().iter().zip(curves) {
        for row in &curve.diagnostics {
            rows.push(DiagnosticsRow {
                kappa: rep.kappa,
                seed: rep.seed,
                step: row.step,
                relative_movement: row.relative_movement,
                flipped_fraction: row.flipped_fraction,
                lambda_min_gram: row.lambda_min_gram,
            });
        }
    }
    ctx.write_csv("diagnostics.csv", &rows)?;
    let (lambda0, method) = lambda0(&config.data.generate(), 2000);
    ctx.write_json(
        "ntk.json",
        &serde_json::json!({ "lambda0": lambda0, "method": method, "n": config.data.n }),
    )?;
    let series = config
        .kappas
        .iter()
        .zip(curves.chunks(config.seeds))
        .map(|(&kappa, group)| {
            let rows = group[0].diagnostics.len();
            let points = (0..rows)
                .map(|i| {
                    let mean = group
                        .iter()
                        .map(|c| c.diagnostics[i].relative_movement)
                        .sum::<f64>()
                        / group.len() as f64;
                    (group[0].diagnostics[i].step as f64, mean)
                })
                .collect();
            Series {
                label: format!("κ = {kappa}"),
                points,
                band: None,
                dashed: false,
                color: None,
            }
        })
        .collect();
    let plot = LinePlot {
        title: format!("Relative weight movement ‖W_k − W_0‖_F / ‖W_0‖_F (λ₀ = {lambda0:.3e})"),
        x_label: "step".into(),
        y_label: "relative movement".into(),
        log_y: false,
        log_x: false,
        series,
        legend_left: true,
    };
    ctx.plot(&plot, "diagnostics")
}

/// Prints the per-κ table.
pub fn print_table(summary: &Summary) {
    println!(
        "{:>6}  {:>22}  {:>11}  {:>11}  {:>15}  {:>12}",
        "kappa", "final clean loss", "floor", "excess", "step to plateau", "initial rate"
    );
    for s in &summary.kappas {
        println!(
            "{:>6}  {:>11.4e} ± {:<8.2e}  {:>11.4e}  {:>11}  {:>15}  {:>12.3e}",
            s.kappa,
            s.final_clean_mean,
            s.final_clean_std,
            s.floor,
            s.excess_floor
                .map(|e| format!("{e:.3e}"))
                .unwrap_or_else(|| "-".into()),
            s.step_to_plateau,
            s.initial_rate
        );
    }
    println!(
        "training time {:.2} s (engine {})",
        summary.train_time_s, summary.engine
    );
}
