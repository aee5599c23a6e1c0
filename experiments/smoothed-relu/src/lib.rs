//! Experiment `smoothed-relu` (paper Fig. 1): the exact smoothed ReLU σ̃ and the proxy σ̂ against
//! a Monte-Carlo estimate of E[ReLU(u)], u = z + s·ξ.

use std::ops::Range;

use gaussmask_harness::InputError;
use gaussmask_harness::config::require;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit};
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_smooth::{proxy_relu, smoothed_relu};
use serde::{Deserialize, Serialize};

mod tables;

/// Config of the experiment (`configs/smoothed-relu.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothedReluConfig {
    /// Seed of the Monte-Carlo draws.
    #[serde(default)]
    pub seed: u64,
    /// Mask level κ.
    pub kappa: f64,
    /// ‖w ⊙ x‖₂, so that s = κ·norm.
    pub norm: f64,
    /// Smallest z of the grid.
    pub z_min: f64,
    /// Largest z of the grid.
    pub z_max: f64,
    /// Grid points.
    pub points: usize,
    /// Monte-Carlo draws per grid point.
    pub mc_samples: usize,
    /// κ values of the second figure, σ̃ and σ̂ side by side (same ‖w ⊙ x‖).
    #[serde(default = "default_curve_kappas")]
    pub curve_kappas: Vec<f64>,
}

fn default_curve_kappas() -> Vec<f64> {
    vec![0.05, 0.2, 0.5, 1.0]
}

impl SmoothedReluConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), String> {
        require(
            self.kappa.is_finite() && self.kappa >= 0.0,
            "kappa",
            "finite and ≥ 0",
            self.kappa,
        )?;
        require(
            self.norm.is_finite() && self.norm >= 0.0,
            "norm",
            "finite and ≥ 0",
            self.norm,
        )?;
        require(self.z_min.is_finite(), "z_min", "finite", self.z_min)?;
        require(
            self.z_max.is_finite() && self.z_max > self.z_min,
            "z_max",
            "finite and > z_min",
            self.z_max,
        )?;
        require(self.points >= 2, "points", "≥ 2", self.points)?;
        for k in &self.curve_kappas {
            require(
                k.is_finite() && *k >= 0.0,
                "curve_kappas",
                "finite and ≥ 0",
                k,
            )?;
        }
        require(self.mc_samples >= 2, "mc_samples", "≥ 2", self.mc_samples)
    }
}

/// One grid point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Pre-activation mean z.
    pub z: f64,
    /// Monte-Carlo mean of ReLU(z + sξ).
    pub mc: f64,
    /// Its standard error.
    pub mc_se: f64,
    /// Draws with z + sξ > 0.
    pub positive: usize,
    /// σ̃(z, s).
    pub exact: f64,
    /// σ̂(z, s).
    pub proxy: f64,
}

/// Evaluates the grid points `range`; point i uses its own sub-stream, so its result does not
/// depend on which other points are evaluated.
pub fn evaluate_points(config: &SmoothedReluConfig, range: Range<usize>) -> Vec<Point> {
    let s = config.kappa * config.norm;
    let root = Stream::new(config.seed, tag::MASK);
    range
        .map(|i| {
            let z = config.z_min
                + (config.z_max - config.z_min) * i as f64 / (config.points - 1) as f64;
            let mut stream = root.substream(i as u64);
            let (mut sum, mut sum2, mut positive) = (0.0, 0.0, 0);
            for _ in 0..config.mc_samples {
                let v = (z + s * stream.normal()).max(0.0);
                sum += v;
                sum2 += v * v;
                positive += usize::from(v > 0.0);
            }
            let n = config.mc_samples as f64;
            let mc = sum / n;
            let var = ((sum2 - n * mc * mc) / (n - 1.0)).max(0.0);
            Point {
                z,
                mc,
                mc_se: (var / n).sqrt(),
                positive,
                exact: smoothed_relu(z, s),
                proxy: proxy_relu(z, s),
            }
        })
        .collect()
}

/// σ̃ (solid) and σ̂ (dashed) for each κ of `curve_kappas`, with ReLU.
fn kappa_curves(config: &SmoothedReluConfig) -> LinePlot {
    let zs: Vec<f64> = (0..config.points)
        .map(|i| {
            config.z_min + (config.z_max - config.z_min) * i as f64 / (config.points - 1) as f64
        })
        .collect();
    let curve = |label: String, f: &dyn Fn(f64) -> f64, dashed, color| Series {
        label,
        points: zs.iter().map(|&z| (z, f(z))).collect(),
        band: None,
        dashed,
        color: Some(color),
    };
    let mut series = Vec::new();
    for (i, &kappa) in config.curve_kappas.iter().enumerate() {
        let s = kappa * config.norm;
        series.push(curve(
            format!("exact, κ = {kappa}"),
            &|z| smoothed_relu(z, s),
            false,
            i,
        ));
        series.push(curve(
            format!("proxy, κ = {kappa}"),
            &|z| proxy_relu(z, s),
            true,
            i,
        ));
    }
    let relu_color = config.curve_kappas.len();
    series.push(curve("ReLU".into(), &|z: f64| z.max(0.0), true, relu_color));
    LinePlot {
        title: format!(
            "Exact smoothed ReLU (solid) and proxy (dashed), ‖w ⊙ x‖ = {}",
            config.norm
        ),
        x_label: "z = wᵀx".into(),
        y_label: "exact E[ReLU(u)] and proxy zΦ(z/s)".into(),
        series,
        legend_left: true,
        ..Default::default()
    }
}

/// Positive draws a grid point needs for its error to be measured in standard errors.
pub const MIN_POSITIVE: usize = 100;

/// The experiment.
pub struct SmoothedRelu;

/// Grid points per unit of work.
const POINTS_PER_UNIT: usize = 50;

impl Study for SmoothedRelu {
    type Config = SmoothedReluConfig;
    /// A block of grid points.
    type Unit = Range<usize>;
    type Output = Vec<Point>;

    fn id(&self) -> &'static str {
        "smoothed-relu"
    }

    fn about(&self) -> &'static str {
        "Fig. 1: exact smoothed ReLU and proxy against Monte Carlo"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/smoothed-relu.toml")
    }

    fn validate(&self, config: &mut SmoothedReluConfig) -> Result<(), InputError> {
        Ok(config.validate()?)
    }

    fn units(&self, config: &SmoothedReluConfig) -> Vec<Unit<Range<usize>>> {
        (0..config.points)
            .step_by(POINTS_PER_UNIT)
            .map(|start| {
                let end = (start + POINTS_PER_UNIT).min(config.points);
                Unit::new(format!("points={start}-{}", end - 1), start..end)
            })
            .collect()
    }

    fn run_unit(
        &self,
        config: &SmoothedReluConfig,
        unit: &Unit<Range<usize>>,
        _: &RunContext,
    ) -> Result<Vec<Point>, HarnessError> {
        Ok(evaluate_points(config, unit.spec.clone()))
    }

    fn reduce(
        &self,
        config: &SmoothedReluConfig,
        outputs: Vec<(Unit<Range<usize>>, Vec<Point>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let points: Vec<Point> = outputs.into_iter().flat_map(|(_, p)| p).collect();
        let csv: Vec<CsvRow> = points
            .iter()
            .map(|p| CsvRow {
                z: p.z,
                mc: p.mc,
                mc_se: p.mc_se,
                mc_positive: p.positive,
                exact: p.exact,
                proxy: p.proxy,
                relu: p.z.max(0.0),
            })
            .collect();
        ctx.write_csv("smoothed_relu.csv", &csv)?;

        let max_err = |f: fn(&Point) -> f64| {
            points
                .iter()
                .map(|p| (f(p) - p.mc).abs())
                .fold(0.0, f64::max)
        };
        // In standard errors, over the points where the mean of the draws is near-normal (at
        // least MIN_POSITIVE draws above 0). Far left nearly every draw is 0, the estimate's
        // error is not Gaussian, and the absolute error above covers those points.
        let max_z = |f: fn(&Point) -> f64| {
            points
                .iter()
                .filter(|p| p.positive >= MIN_POSITIVE)
                .map(|p| (f(p) - p.mc).abs() / p.mc_se)
                .fold(0.0, f64::max)
        };
        let summary = serde_json::json!({
            "kappa": config.kappa,
            "s": config.kappa * config.norm,
            "points": config.points,
            "mc_samples": config.mc_samples,
            "max_abs_error_exact": max_err(|p| p.exact),
            "max_abs_error_proxy": max_err(|p| p.proxy),
            "points_in_se": points.iter().filter(|p| p.positive >= MIN_POSITIVE).count(),
            "max_error_in_se_exact": max_z(|p| p.exact),
            "max_error_in_se_proxy": max_z(|p| p.proxy),
        });
        ctx.write_json("summary.json", &summary)?;

        let curve = |label: &str, f: fn(&Point) -> f64, dashed| Series {
            label: label.into(),
            points: points.iter().map(|p| (p.z, f(p))).collect(),
            band: None,
            dashed,
            color: None,
        };
        let plot = LinePlot {
            title: format!(
                "Smoothed ReLU, κ = {}, ‖w ⊙ x‖ = {} ({} MC draws per point)",
                config.kappa, config.norm, config.mc_samples
            ),
            x_label: "z = wᵀx".into(),
            y_label: "E[ReLU(wᵀ(x ⊙ c))]".into(),
            series: vec![
                curve("Monte Carlo", |p| p.mc, false),
                curve("exact: zΦ(z/s) + sφ(z/s)", |p| p.exact, true),
                curve("proxy: zΦ(z/s)", |p| p.proxy, false),
                curve("ReLU(z)", |p| p.z.max(0.0), true),
            ],
            legend_left: true,
            ..Default::default()
        };
        ctx.plot(&plot, "smoothed_relu")?;
        ctx.plot(&kappa_curves(config), "smoothed_relu_kappas")?;
        println!(
            "max |exact − MC| = {:.3e} ({:.2} standard errors); max |proxy − MC| = {:.3e} ({:.1} standard errors)",
            summary["max_abs_error_exact"].as_f64().unwrap_or(f64::NAN),
            summary["max_error_in_se_exact"]
                .as_f64()
                .unwrap_or(f64::NAN),
            summary["max_abs_error_proxy"].as_f64().unwrap_or(f64::NAN),
            summary["max_error_in_se_proxy"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        Ok(())
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `smoothed_relu.csv`.
#[derive(Serialize)]
struct CsvRow {
    z: f64,
    mc: f64,
    mc_se: f64,
    mc_positive: usize,
    exact: f64,
    proxy: f64,
    relu: f64,
}
