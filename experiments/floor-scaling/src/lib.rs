//! `floor-scaling` (Theorem 5.5): how the floor of masked GD scales with κ, the width m, the
//! number of samples n and the init scale τ.
//!
//! For every cell (m, n, τ) of the grid, the trajectories problem is trained at every κ and seed
//! (replicas batched), the floor of each run is the mean clean loss over the last
//! `tail_fraction` of its logged steps, and log(floor(κ) − floor(0)) is fitted against log κ by
//! least squares: the slope is the κ-exponent, with a 95% confidence interval from the residuals.

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext, mean_std};
use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_train::TrainConfig;
use serde::{Deserialize, Serialize};
use toml::Table;
use trajectories::{TrajectoriesConfig, lambda0, tail_mean, train_curves};

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
    pub kappas: Vec<f64>,
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
    /// Data; `n` is set per cell.
    pub data: SyntheticConfig,
    /// Model; `width` and `tau` are set per cell.
    pub model: TwoLayerReluConfig,
    /// Training; `lr` is set per cell.
    pub train: TrainConfig,
}

impl FloorScalingConfig {
    fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let c: Self = parse(table)?;
        c.validate().map_err(HarnessError::input)?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        require(
            self.kappas.contains(&0.0),
            "kappas",
            "a list containing 0 (the clean floor)",
            format!("{:?}", self.kappas),
        )?;
        require(
            self.kappas.iter().filter(|k| **k > 0.0).count() >= 2,
            "kappas",
            "at least two κ > 0 (for a fit)",
            format!("{:?}", self.kappas),
        )?;
        for k in &self.kappas {
            require(k.is_finite() && *k >= 0.0, "kappas", "finite and ≥ 0", k)?;
        }
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
            self.tail_fraction > 0.0 && self.tail_fraction <= 1.0,
            "tail_fraction",
            "in (0, 1]",
            self.tail_fraction,
        )?;
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

    fn cell_config(&self, (m, n, tau): (usize, usize, f64)) -> Result<TrajectoriesConfig, String> {
        let mut c = TrajectoriesConfig {
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

/// A least-squares line y = intercept + slope·x with a 95% confidence interval of the slope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineFit {
    /// Slope.
    pub slope: f64,
    /// Intercept.
    pub intercept: f64,
    /// 95% confidence interval of the slope: slope ± t(0.975, k − 2)·SE (NaN for k = 2).
    pub ci95: (f64, f64),
    /// Points fitted.
    pub points: usize,
}

/// Student-t 0.975 quantiles for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Ordinary least squares of `y` on `x`; None with fewer than two distinct x.
pub fn fit_line(x: &[f64], y: &[f64]) -> Option<LineFit> {
    let k = x.len();
    if k < 2 || y.len() != k {
        return None;
    }
    let (mx, my) = (
        x.iter().sum::<f64>() / k as f64,
        y.iter().sum::<f64>() / k as f64,
    );
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ci95 = if k > 2 {
        let rss: f64 = x
            .iter()
            .zip(y)
            .map(|(a, b)| (b - intercept - slope * a).powi(2))
            .sum();
        let se = (rss / (k - 2) as f64 / sxx).sqrt();
        let t = T975.get(k - 3).copied().unwrap_or(1.96);
        (slope - t * se, slope + t * se)
    } else {
        (f64::NAN, f64::NAN)
    };
    Some(LineFit {
        slope,
        intercept,
        ci95,
        points: k,
    })
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

/// The κ-exponent of the floor over m, n and τ.
pub struct FloorScaling;

impl Experiment for FloorScaling {
    fn id(&self) -> &'static str {
        "floor-scaling"
    }

    fn about(&self) -> &'static str {
        "Thm 5.5: the floor's exponent in κ, fitted per width m, samples n and init scale τ"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/floor-scaling.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        FloorScalingConfig::from_table(config).map(|_| ())
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let c = FloorScalingConfig::from_table(config)?;
        let mut rows = Vec::new();
        let mut fits = Vec::new();
        for cell in c.cells() {
            let (m, n, tau) = cell;
            let cfg = c.cell_config(cell).map_err(HarnessError::input)?;
            eprintln!("cell m = {m}, n = {n}, τ = {tau}");
            let curves = train_curves(&cfg, ctx)?;
            let mut cell_rows: Vec<FloorRow> = cfg
                .kappas
                .iter()
                .zip(curves.chunks(cfg.seeds))
                .map(|(&kappa, group)| {
                    let floors: Vec<f64> = group
                        .iter()
                        .map(|curve| tail_mean(&curve.clean, c.tail_fraction))
                        .collect();
                    let (floor, floor_std) = mean_std(&floors);
                    FloorRow {
                        m,
                        n,
                        tau,
                        kappa,
                        floor,
                        floor_std,
                        excess: f64::NAN,
                    }
                })
                .collect();
            let clean_floor = cell_rows
                .iter()
                .find(|r| r.kappa == 0.0)
                .map(|r| r.floor)
                .expect("validated: κ = 0 is in the grid");
            let (mut lx, mut ly) = (Vec::new(), Vec::new());
            for r in &mut cell_rows {
                r.excess = r.floor - clean_floor;
                if r.kappa > 0.0 && r.excess > 0.0 {
                    lx.push(r.kappa.ln());
                    ly.push(r.excess.ln());
                }
            }
            fits.push(CellFit {
                m,
                n,
                tau,
                clean_floor,
                fit: fit_line(&lx, &ly),
            });
            rows.extend(cell_rows);
        }
        let train_time_s = ctx.elapsed().as_secs_f64();
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
        write_outputs(&c, &rows, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }
}

fn write_outputs(
    c: &FloorScalingConfig,
    rows: &[FloorRow],
    summary: &Summary,
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Csv::new(&["m", "n", "tau", "kappa", "floor", "floor_std", "excess"]);
    for r in rows {
        csv.row(&[
            r.m.to_string(),
            r.n.to_string(),
            r.tau.to_string(),
            r.kappa.to_string(),
            r.floor.to_string(),
            r.floor_std.to_string(),
            r.excess.to_string(),
        ]);
    }
    ctx.write("floors.csv", csv.into_bytes())?;
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
        "{:>6} {:>6} {:>5}  {:>11}  {:>8}  {:>19}  {:>6}",
        "m", "n", "tau", "clean floor", "exponent", "95% CI", "points"
    );
    for f in &summary.fits {
        let (slope, ci, points) = match &f.fit {
            Some(l) => (
                format!("{:.3}", l.slope),
                format!("[{:.3}, {:.3}]", l.ci95.0, l.ci95.1),
                l.points.to_string(),
            ),
            None => ("-".into(), "-".into(), "<2".into()),
        };
        println!(
            "{:>6} {:>6} {:>5}  {:>11.4e}  {:>8}  {:>19}  {:>6}",
            f.m, f.n, f.tau, f.clean_floor, slope, ci, points
        );
    }
    for (n, l) in &summary.lambda0 {
        println!("λ₀(n = {n}) = {l:.4e}");
    }
    println!("training time {:.1} s", summary.train_time_s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_line_matches_a_hand_computed_case() {
        // x̄ = 2.5, ȳ = 2.75, Sxy = 5.5, Sxx = 5: slope 1.1, intercept 0; RSS = 2.7, SE =
        // √(1.35 / 5), t(0.975, 2) = 4.303.
        let f = fit_line(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 5.0]).unwrap();
        assert!((f.slope - 1.1).abs() < 1e-12 && f.intercept.abs() < 1e-12);
        let half = 4.303 * (1.35f64 / 5.0).sqrt();
        assert!((f.ci95.0 - (1.1 - half)).abs() < 1e-9);
        assert!((f.ci95.1 - (1.1 + half)).abs() < 1e-9);
    }

    #[test]
    fn fit_line_recovers_an_exact_power_law() {
        let kappas = [0.05f64, 0.1, 0.2, 0.4, 1.0];
        let (x, y): (Vec<f64>, Vec<f64>) = kappas
            .iter()
            .map(|k| (k.ln(), (3.0 * k.powf(1.7)).ln()))
            .unzip();
        let f = fit_line(&x, &y).unwrap();
        assert!((f.slope - 1.7).abs() < 1e-12);
        assert!((f.intercept - 3f64.ln()).abs() < 1e-12);
        assert!((f.ci95.1 - f.ci95.0).abs() < 1e-6);
        assert!(fit_line(&[1.0, 1.0], &[2.0, 3.0]).is_none());
    }
}
