//! `depth` (an open question of the paper): does the κ-floor picture of the two-layer theory
//! survive depth? Input-masked GD on ReLU MLPs of depth 2, 3 and 4 (same width, NTK
//! parameterization) on the trajectories data: floors against κ, and their κ-exponent per depth.

use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::stats::{LineFit, excess_exponent, require_clean_kappa};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit};
use gaussmask_sweep::{Curve, SweepConfig, check_tail_fraction, floor_over_runs, seed_mean};
use gaussmask_train::{LogRecord, check_deep, train_deep_grouped};
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/depth.toml`): a trajectories config plus the depths and a
/// learning rate per depth.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepthConfig {
    /// Weight layers, the output layer included (2 = the paper's network).
    pub depths: Vec<usize>,
    /// Learning rate of each depth (`train.lr` is ignored).
    pub lrs: Vec<f64>,
    /// Share of the logged steps the floor averages over.
    pub tail_fraction: f64,
    /// Everything else, as in trajectories (unknown keys are refused there).
    #[serde(flatten)]
    pub base: SweepConfig,
}

impl DepthConfig {
    fn validate(&mut self) -> Result<(), String> {
        self.base.resolve()?;
        require(!self.depths.is_empty(), "depths", "a non-empty list", "[]")?;
        require_distinct("depths", &self.depths)?;
        for &l in &self.depths {
            require(l >= 2, "depths", "≥ 2 (weight layers, output included)", l)?;
        }
        require(
            self.lrs.len() == self.depths.len(),
            "lrs",
            &format!("one per depth ({})", self.depths.len()),
            self.lrs.len(),
        )?;
        for lr in &self.lrs {
            require(lr.is_finite() && *lr > 0.0, "lrs", "finite and > 0", lr)?;
        }
        check_tail_fraction(self.tail_fraction)?;
        require_clean_kappa(&self.base.kappas)?;
        Ok(check_deep(&self.base.model, &self.base.train)?)
    }
}

/// Floor of one (depth, κ).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Weight layers.
    pub depth: usize,
    /// κ.
    pub kappa: f64,
    /// Floor of the clean loss (mean, sd over seeds).
    pub floor: (f64, f64),
    /// floor − floor at κ = 0.
    pub excess: f64,
}

/// The κ-exponent of one depth.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepthFit {
    /// Weight layers.
    pub depth: usize,
    /// Clean floor.
    pub clean_floor: f64,
    /// Fit of log(excess) on log κ.
    pub fit: Option<LineFit>,
    /// Training time of this depth, s.
    pub train_time_s: f64,
}

/// Input masking on deeper MLPs: one unit of work per depth (every κ and seed side by side).
pub struct Depth;

impl Study for Depth {
    type Config = DepthConfig;
    type Unit = (usize, f64);
    /// A curve per replica, in `base.replicas()` order.
    type Output = Timed<Vec<Curve>>;

    fn id(&self) -> &'static str {
        "depth"
    }

    fn about(&self) -> &'static str {
        "Open question: masked GD on ReLU MLPs of depth 2, 3 and 4; floors and κ-exponents"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/depth.toml")
    }

    fn validate(&self, config: &mut DepthConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &DepthConfig) -> Vec<Unit<(usize, f64)>> {
        c.depths
            .iter()
            .zip(&c.lrs)
            .map(|(&depth, &lr)| Unit::new(format!("depth={depth}"), (depth, lr)))
            .collect()
    }

    fn run_unit(
        &self,
        c: &DepthConfig,
        unit: &Unit<(usize, f64)>,
        ctx: &RunContext,
    ) -> Result<Timed<Vec<Curve>>, HarnessError> {
        let (depth, lr) = unit.spec;
        let data = c.base.data.generate();
        let replicas = c.base.replicas();
        let mut train = c.base.train.clone();
        train.lr = lr;
        let started = std::time::Instant::now();
        let bar = ctx.progress(train.steps as u64, &format!("depth {depth}"));
        let mut curves = vec![Curve::default(); replicas.len()];
        // One group of replicas per worker thread on CPU backends; the GPU takes one batch.
        let groups = if ctx.backend.is_gpu() {
            1
        } else {
            rayon::current_num_threads()
        };
        train_deep_grouped(
            &c.base.model,
            depth,
            &replicas,
            &data,
            &train,
            &ctx.device,
            groups,
            |rec: &LogRecord| {
                for (j, curve) in curves.iter_mut().enumerate() {
                    curve.steps.push(rec.step);
                    curve.clean.push(rec.clean_loss[j]);
                    curve.masked.push(rec.masked_loss[j]);
                }
                bar.set_position(rec.step as u64);
            },
        )
        .map_err(|e| HarnessError::run(format!("depth {depth}: {e}")))?;
        bar.finish_and_clear();
        Ok(Timed {
            value: curves,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn reduce(
        &self,
        c: &DepthConfig,
        outputs: Vec<(Unit<(usize, f64)>, Timed<Vec<Curve>>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let (mut rows, mut fits, mut all_curves) = (Vec::new(), Vec::new(), Vec::new());
        for (unit, runs) in outputs {
            let depth = unit.spec.0;
            let mut depth_rows: Vec<Row> = c
                .base
                .kappas
                .iter()
                .zip(runs.value.chunks(c.base.seeds))
                .map(|(&kappa, group)| Row {
                    depth,
                    kappa,
                    floor: floor_over_runs(
                        group.iter().map(|c| c.clean.as_slice()),
                        c.tail_fraction,
                    ),
                    excess: f64::NAN,
                })
                .collect();
            let points: Vec<(f64, f64)> = depth_rows.iter().map(|r| (r.kappa, r.floor.0)).collect();
            let (clean_floor, fit) = excess_exponent(&points).map_err(HarnessError::input)?;
            for r in &mut depth_rows {
                r.excess = r.floor.0 - clean_floor;
            }
            fits.push(DepthFit {
                depth,
                clean_floor,
                fit,
                train_time_s: runs.seconds,
            });
            rows.extend(depth_rows);
            all_curves.push(runs.value);
        }
        write_outputs(c, &all_curves, &rows, &fits, ctx)?;
        print_table(&rows, &fits);
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One row of `depth.csv`.
#[derive(Serialize)]
struct CurveRow {
    depth: usize,
    kappa: f64,
    seed: u64,
    step: usize,
    clean_loss: f64,
}

fn write_outputs(
    c: &DepthConfig,
    curves: &[Vec<Curve>],
    rows: &[Row],
    fits: &[DepthFit],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Vec::new();
    let replicas = c.base.replicas();
    for (&depth, depth_curves) in c.depths.iter().zip(curves) {
        for (rep, curve) in replicas.iter().zip(depth_curves) {
            for (&step, &clean_loss) in curve.steps.iter().zip(&curve.clean) {
                csv.push(CurveRow {
                    depth,
                    kappa: rep.kappa,
                    seed: rep.seed,
                    step,
                    clean_loss,
                });
            }
        }
    }
    ctx.write_csv("depth.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "rows": rows, "fits": fits }),
    )?;
    let series = c
        .depths
        .iter()
        .map(|&depth| Series {
            label: format!("depth {depth}"),
            points: rows
                .iter()
                .filter(|r| r.depth == depth && r.kappa > 0.0 && r.excess > 0.0)
                .map(|r| (r.kappa, r.excess))
                .collect(),
            band: None,
            dashed: false,
            color: None,
        })
        .collect();
    let plot = LinePlot {
        title: format!(
            "Excess floor of the clean loss by depth (n = {}, m = {})",
            c.base.data.n, c.base.model.width
        ),
        x_label: "κ".into(),
        y_label: "floor(κ) − floor(0)".into(),
        log_y: true,
        log_x: true,
        series,
        legend_left: true,
    };
    ctx.plot(&plot, "excess_floor")?;
    for (&depth, depth_curves) in c.depths.iter().zip(curves) {
        let series = c
            .base
            .kappas
            .iter()
            .zip(depth_curves.chunks(c.base.seeds))
            .map(|(&kappa, group)| Series {
                label: format!("κ = {kappa}"),
                points: group[0]
                    .steps
                    .iter()
                    .map(|&s| s as f64)
                    .zip(seed_mean(group, |c| &c.clean))
                    .collect(),
                band: None,
                dashed: false,
                color: None,
            })
            .collect();
        let plot = LinePlot {
            title: format!("Masked GD, depth {depth}: clean training loss"),
            x_label: "step".into(),
            y_label: "clean loss ½Σ(f − y)²".into(),
            log_y: true,
            log_x: false,
            series,
            legend_left: false,
        };
        ctx.plot(&plot, &format!("trajectories_depth{depth}"))?;
    }
    Ok(())
}

fn print_table(rows: &[Row], fits: &[DepthFit]) {
    println!(
        "{:>5} {:>6}  {:>21}  {:>11}",
        "depth", "kappa", "floor", "excess"
    );
    for r in rows {
        println!(
            "{:>5} {:>6}  {:>10.4e} ± {:<8.1e}  {:>11.3e}",
            r.depth, r.kappa, r.floor.0, r.floor.1, r.excess
        );
    }
    for f in fits {
        match &f.fit {
            Some(l) => println!(
                "depth {}: κ-exponent {:.3} {} over {} κ; clean floor {:.4e}; {:.1} s",
                f.depth,
                l.slope,
                l.ci95_text(),
                l.points,
                f.clean_floor,
                f.train_time_s
            ),
            None => println!("depth {}: fewer than two κ above the clean floor", f.depth),
        }
    }
}
