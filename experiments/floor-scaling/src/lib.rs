//! `floor-scaling` (Theorem 5.5): how the floor of masked GD scales with κ, the width m, the
//! number of samples n and the init scale τ.
//!
//! For every cell (m, n, τ) of the grid, the trajectories problem is trained at every κ and seed
//! (replicas batched), the floor of each run is the mean clean loss over the last
//! `tail_fraction` of its logged steps, and log(floor(κ) − floor(0)) is fitted against log κ by
//! least squares: the slope is the κ-exponent, with a 95% confidence interval from the residuals.

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::stats::{LineFit, excess_exponent, require_clean_kappa};
use gaussmask_harness::{HarnessError, RunContext, Study, Timed, Unit};
use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_sweep::{SweepConfig, check_tail_fraction, floor_over_runs, lambda0, train_kappa};
use gaussmask_train::TrainConfig;
use serde::{Deserialize, Serialize};

mod tables;

/// The experiment's config (`configs/floor-scaling.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorScalingConfig {
    /// Base seed.
    #[serde(default)]
    pub seed: u64,
    /// Seeds per (cell, κ).
    pub seeds: usize,
    /// κ grid; must contain 0 (the clean floor the excess is measured from).
    pub kappas: gaussmask_nn::KappaGrid,
    /// Widths m.
    pub widths: Vec<usize>,
    /// Sample counts n.
    pub samples: Vec<usize>,
    /// Init scales τ.
    pub taus: Vec<f64>,
    /// The learning rate is `lr_times_n / n` (trajectories: 0.005 · 500 = 2.5).
    pub lr_times_n: f64,
    /// Share of the logged steps the floor averages over.
    pub tail_fraction: f64,
    /// A second fit uses only the κ up to this (the small-κ exponent).
    pub small_kappa_max: f64,
    /// Data; `n` is set per cell.
    pub data: SyntheticConfig,
    /// Model; `width` and `tau` are set per cell.
    pub model: TwoLayerReluConfig,
    /// Training; `lr` is set per cell.
    pub train: TrainConfig,
}

impl FloorScalingConfig {
    fn validate(&self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        require_distinct("widths", &self.widths)?;
        require_distinct("samples", &self.samples)?;
        require_distinct("taus", &self.taus)?;
        require_clean_kappa(&self.kappas)?;
        require(
            self.kappas.iter().filter(|k| **k > 0.0).count() >= 2,
            "kappas",
            "at least two κ > 0 (for a fit)",
            format!("{:?}", self.kappas),
        )?;
        require(!self.widths.is_empty(), "widths", "a non-empty list", "[]")?;
        require(
            !self.samples.is_empty(),
            "samples",
            "a non-empty list",
            "[]",
        )?;
        require(!self.taus.is_empty(), "taus", "a non-empty list", "[]")?;
        for t in &self.taus {
            require(t.is_finite() && *t > 0.0, "taus", "finite and > 0", t)?;
        }
        require(
            self.lr_times_n.is_finite() && self.lr_times_n > 0.0,
            "lr_times_n",
            "finite and > 0",
            self.lr_times_n,
        )?;
        require(
            self.small_kappa_max > 0.0,
            "small_kappa_max",
            "> 0",
            self.small_kappa_max,
        )?;
        check_tail_fraction(self.tail_fraction)?;
        // Every cell must be a valid trajectories config.
        for cell in self.cells() {
            self.cell_config(cell)?;
        }
        Ok(())
    }

    /// (m, n, τ) of every cell, in output order.
    fn cells(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        for &n in &self.samples {
            for &tau in &self.taus {
                for &m in &self.widths {
                    out.push((m, n, tau));
                }
            }
        }
        out
    }

    fn cell_config(&self, (m, n, tau): (usize, usize, f64)) -> Result<SweepConfig, String> {
        let mut c = SweepConfig {
            seed: self.seed,
            seeds: self.seeds,
            kappas: self.kappas.clone(),
            replica_chunk: 0,
            data: self.data.clone(),
            model: self.model.clone(),
            train: self.train.clone(),
        };
        c.data.n = n;
        c.model.width = m;
        c.model.tau = tau;
        c.train.lr = self.lr_times_n / n as f64;
        c.resolve()?;
        Ok(c)
    }
}

/// Floors of one (cell, κ).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloorRow {
    /// Width m.
    pub m: usize,
    /// Samples n.
    pub n: usize,
    /// Init scale τ.
    pub tau: f64,
    /// κ.
    pub kappa: f64,
    /// Mean floor over the seeds.
    pub floor: f64,
    /// Standard deviation of the floor over the seeds.
    pub floor_std: f64,
    /// floor − floor at κ = 0.
    pub excess: f64,
}

/// The κ-exponent of one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellFit {
    /// Width m.
    pub m: usize,
    /// Samples n.
    pub n: usize,
    /// Init scale τ.
    pub tau: f64,
    /// Clean floor (κ = 0).
    pub clean_floor: f64,
    /// Fit of log(excess) on log κ over the κ > 0 whose excess is > 0; None if fewer than two.
    pub fit: Option<LineFit>,
    /// The same fit over the κ ≤ `small_kappa_max` only.
    pub fit_small: Option<LineFit>,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Per-cell fits.
    pub fits: Vec<CellFit>,
    /// λ₀ of each dataset: (n, λ₀).
    pub lambda0: Vec<(usize, f64)>,
    /// How λ₀ was computed.
    pub lambda0_method: String,
    /// Wall time of the training, s.
    pub train_time_s: f64,
}

/// One unit of work: the seeds of one κ in one cell (m, n, τ).
#[derive(Clone, Debug)]
pub struct CellKappa {
    /// (m, n, τ).
    pub cell: (usize, usize, f64),
    /// κ.
    pub kappa: f64,
}

/// The κ-exponent of the floor over m, n and τ.
pub struct FloorScaling;

impl Study for FloorScaling {
    type Config = FloorScalingConfig;
    type Unit = CellKappa;
    /// The floor over the seeds: (mean, standard deviation).
    type Output = Timed<(f64, f64)>;

    fn id(&self) -> &'static str {
        "floor-scaling"
    }

    fn about(&self) -> &'static str {
        "Thm 5.5: the floor's exponent in κ, fitted per width m, samples n and init scale τ"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/floor-scaling.toml")
    }

    fn validate(&self, config: &mut FloorScalingConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, c: &FloorScalingConfig) -> Vec<Unit<CellKappa>> {
        let mut out = Vec::new();
        for cell in c.cells() {
            let (m, n, tau) = cell;
            for &kappa in &c.kappas {
                out.push(Unit::new(
                    format!(
                        "m={m}_n={n}_tau={tau}_kappa={}",
                        gaussmask_nn::kappa_label(kappa)
                    ),
                    CellKappa { cell, kappa },
                ));
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &FloorScalingConfig,
        unit: &Unit<CellKappa>,
        ctx: &RunContext,
    ) -> Result<Timed<(f64, f64)>, HarnessError> {
        let cfg = c.cell_config(unit.spec.cell).map_err(HarnessError::input)?;
        let runs = train_kappa(&cfg, unit.spec.kappa, &cfg.data.generate(), ctx)?;
        let floor = floor_over_runs(
            runs.value.curves.iter().map(|c| c.clean.as_slice()),
            c.tail_fraction,
        );
        Ok(Timed {
            value: floor,
            seconds: runs.seconds,
        })
    }

    fn reduce(
        &self,
        c: &FloorScalingConfig,
        outputs: Vec<(Unit<CellKappa>, Timed<(f64, f64)>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let train_time_s = Timed::total(&outputs);
        let mut rows = Vec::new();
        let mut fits = Vec::new();
        for cell in outputs.chunks(c.kappas.len()) {
            let (m, n, tau) = cell[0].0.spec.cell;
            let mut cell_rows: Vec<FloorRow> = cell
                .iter()
                .map(|(unit, u)| FloorRow {
                    m,
                    n,
                    tau,
                    kappa: unit.spec.kappa,
                    floor: u.value.0,
                    floor_std: u.value.1,
                    excess: f64::NAN,
                })
                .collect();
            let points: Vec<(f64, f64)> = cell_rows.iter().map(|r| (r.kappa, r.floor)).collect();
            let (clean_floor, fit) = excess_exponent(&points).map_err(HarnessError::input)?;
            let small: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|(k, _)| *k <= c.small_kappa_max)
                .collect();
            let fit_small = excess_exponent(&small).ok().and_then(|(_, f)| f);
            for r in &mut cell_rows {
                r.excess = r.floor - clean_floor;
            }
            fits.push(CellFit {
                m,
                n,
                tau,
                clean_floor,
                fit,
                fit_small,
            });
            rows.extend(cell_rows);
        }
        let mut lambda0s = Vec::new();
        let mut method = String::new();
        for &n in &c.samples {
            let mut data = c.data.clone();
            data.n = n;
            let (l, how) = lambda0(&data.generate(), 2000);
            lambda0s.push((n, l));
            method = how;
        }
        let summary = Summary {
            fits,
            lambda0: lambda0s,
            lambda0_method: method,
            train_time_s,
        };
        write_outputs(c, &rows, &summary, ctx)?;
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

fn write_outputs(
    c: &FloorScalingConfig,
    rows: &[FloorRow],
    summary: &Summary,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    ctx.write_csv("floors.csv", rows)?;
    ctx.write_json("summary.json", summary)?;
    // One figure per (n, τ): excess floor against κ, log-log, one line per width.
    for &n in &c.samples {
        for &tau in &c.taus {
            let series = c
                .widths
                .iter()
                .map(|&m| Series {
                    label: format!("m = {m}"),
                    points: rows
                        .iter()
                        .filter(|r| r.m == m && r.n == n && r.tau == tau)
                        .filter(|r| r.kappa > 0.0 && r.excess > 0.0)
                        .map(|r| (r.kappa, r.excess))
                        .collect(),
                    band: None,
                    dashed: false,
                    color: None,
                })
                .collect();
            let plot = LinePlot {
                title: format!("Excess floor of the clean loss (n = {n}, τ = {tau})"),
                x_label: "κ".into(),
                y_label: "floor(κ) − floor(0)".into(),
                log_y: true,
                log_x: true,
                series,
                legend_left: true,
            };
            ctx.plot(&plot, &format!("excess_floor_n{n}_tau{tau}"))?;
        }
    }
    Ok(())
}

fn print_table(summary: &Summary) {
    println!(
        "{:>6} {:>6} {:>5}  {:>11}  {:>32}  {:>32}",
        "m", "n", "tau", "clean floor", "exponent [95% CI] (points)", "small-κ exponent"
    );
    let show = |fit: &Option<LineFit>| match fit {
        Some(l) => format!("{:.3} {} ({})", l.slope, l.ci95_text(), l.points),
        None => "- (< 2 points)".into(),
    };
    for f in &summary.fits {
        println!(
            "{:>6} {:>6} {:>5}  {:>11.4e}  {:>32}  {:>32}",
            f.m,
            f.n,
            f.tau,
            f.clean_floor,
            show(&f.fit),
            show(&f.fit_small)
        );
    }
    for (n, l) in &summary.lambda0 {
        println!("λ₀(n = {n}) = {l:.4e}");
    }
    println!("training time {:.1} s", summary.train_time_s);
}
