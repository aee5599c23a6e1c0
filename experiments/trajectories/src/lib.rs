//! Experiment `trajectories` (paper Fig. 3): clean training loss of masked full-batch GD for a
//! grid of κ, several seeds each, all replicas trained side by side.

use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext};
use gaussmask_sweep::{
    Curve, Summary, TrajectoriesConfig, lambda0, seed_mean, summarize, train_curves,
};
use toml::Table;

/// The experiment.
pub struct Trajectories;

impl Experiment for Trajectories {
    fn id(&self) -> &'static str {
        "trajectories"
    }

    fn about(&self) -> &'static str {
        "Fig. 3: clean loss of masked GD over steps for a κ grid (the main job)"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/trajectories.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        TrajectoriesConfig::from_table(config).map(|_| ())
    }

    fn has_diagnostics(&self) -> bool {
        true
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let config = TrajectoriesConfig::from_table(config)?;
        let curves = train_curves(&config, ctx)?;
        let chunk = config.chunk_size(ctx.backend);
        let engine = config.train.resolved_engine(ctx.backend.is_gpu());
        let summary = summarize(&config, &curves, chunk, engine, ctx.elapsed().as_secs_f64());
        write_outputs(&config, &curves, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }
}

fn write_outputs(
    config: &TrajectoriesConfig,
    curves: &[Curve],
    summary: &Summary,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let n = config.data.n as f64;
    let mut csv = Csv::new(&[
        "kappa",
        "seed",
        "step",
        "clean_loss",
        "masked_loss",
        "clean_mse",
    ]);
    for (rep, curve) in config.replicas().iter().zip(curves) {
        for i in 0..curve.steps.len() {
            csv.row(&[
                rep.kappa.to_string(),
                rep.seed.to_string(),
                curve.steps[i].to_string(),
                curve.clean[i].to_string(),
                curve.masked[i].to_string(),
                (2.0 * curve.clean[i] / n).to_string(),
            ]);
        }
    }
    ctx.write("trajectories.csv", csv.into_bytes())?;
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
    config: &TrajectoriesConfig,
    curves: &[Curve],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Csv::new(&[
        "kappa",
        "seed",
        "step",
        "relative_movement",
        "flipped_fraction",
        "lambda_min_gram",
    ]);
    for (rep, curve) in config.replicas().iter().zip(curves) {
        for row in &curve.diagnostics {
            csv.row(&[
                rep.kappa.to_string(),
                rep.seed.to_string(),
                row.step.to_string(),
                row.relative_movement.to_string(),
                row.flipped_fraction.to_string(),
                row.lambda_min_gram
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ]);
        }
    }
    ctx.write("diagnostics.csv", csv.into_bytes())?;
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
