//! Experiment `decomposition` (the paper's Theorem 4.1): for random networks on the trajectories
//! data, the expected masked loss by Monte Carlo against its exact closed form (A), the proxy (B),
//! and the size of each term, over a grid of κ.

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::config::{parse, require};
use gaussmask_harness::output::Csv;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{Experiment, HarnessError, RunContext, mean_std};
use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_regularizer::{MonteCarlo, decompose, model_for_kappas};
use serde::{Deserialize, Serialize};
use toml::Table;

/// Config of the experiment (`configs/decomposition.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecompositionConfig {
    /// Base seed: network s uses the initial weights of seed + s.
    #[serde(default)]
    pub seed: u64,
    /// Random networks.
    pub seeds: usize,
    /// Mask levels κ.
    pub kappas: Vec<f64>,
    /// Masks drawn for each Monte-Carlo estimate.
    pub mc_samples: usize,
    /// Samples per chunk of the exact expected loss (memory grows as chunk·m²).
    #[serde(default = "default_chunk")]
    pub sample_chunk: usize,
    /// The data (the trajectories problem by default).
    pub data: SyntheticConfig,
    /// The networks (input_dim 0 = the data's d); their initial weights are used as drawn.
    pub model: TwoLayerReluConfig,
}

fn default_chunk() -> usize {
    50
}

impl DecompositionConfig {
    /// Parses a resolved config table and checks every value.
    pub fn from_table(table: &Table) -> Result<Self, HarnessError> {
        let mut c: Self = parse(table)?;
        c.resolve().map_err(HarnessError::input)?;
        Ok(c)
    }

    fn resolve(&mut self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
        require(!self.kappas.is_empty(), "kappas", "a non-empty list", "[]")?;
        for k in &self.kappas {
            require(k.is_finite() && *k >= 0.0, "kappas", "finite and ≥ 0", k)?;
        }
        require(self.mc_samples >= 2, "mc_samples", "≥ 2", self.mc_samples)?;
        require(
            self.sample_chunk >= 1,
            "sample_chunk",
            "≥ 1",
            self.sample_chunk,
        )?;
        self.data.validate()?;
        if self.model.input_dim == 0 {
            self.model.input_dim = self.data.d;
        }
        require(
            self.model.input_dim == self.data.d,
            "model.input_dim",
            &format!("0 or data.d = {}", self.data.d),
            self.model.input_dim,
        )?;
        self.model.validate()
    }
}

/// One row of the result: a network (seed) at one κ.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Network seed.
    pub seed: u64,
    /// All terms.
    #[serde(flatten)]
    pub terms: gaussmask_regularizer::Decomposition,
    /// Whether (A) lies in the 95% Monte-Carlo interval.
    pub exact_in_mc_interval: bool,
}

/// Per-κ means over the networks, for `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct KappaSummary {
    /// Mask level.
    pub kappa: f64,
    /// Mean clean loss.
    pub clean: f64,
    /// Mean Monte-Carlo masked loss.
    pub mc_masked: f64,
    /// Mean exact expected loss (A).
    pub exact: f64,
    /// Mean proxy (B).
    pub proxy: f64,
    /// Mean variance term ½ΣV.
    pub variance: f64,
    /// Mean regularizer ½ΣR.
    pub regularizer: f64,
    /// Mean relative proxy gap (proxy − exact)/exact.
    pub proxy_gap: f64,
    /// Networks whose (A) lies in the 95% MC interval, out of `networks`.
    pub exact_in_interval: usize,
    /// Networks.
    pub networks: usize,
}

/// The experiment.
pub struct Decomposition;

impl Experiment for Decomposition {
    fn id(&self) -> &'static str {
        "decomposition"
    }

    fn about(&self) -> &'static str {
        "Thm 4.1: expected masked loss by Monte Carlo vs exact (A) and proxy (B), term by term"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/decomposition.toml")
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        DecompositionConfig::from_table(config).map(|_| ())
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let config = DecompositionConfig::from_table(config)?;
        let rows = evaluate(&config, ctx);
        let summary = summarize(&config, &rows);
        write_outputs(&config, &rows, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }
}

/// Every network at every κ.
pub fn evaluate(config: &DecompositionConfig, ctx: &RunContext) -> Vec<Row> {
    let data = config.data.generate();
    let (x, y) = data.all_tensors(&ctx.device);
    let bar = ctx.progress(config.seeds as u64, "networks");
    let mut rows = Vec::new();
    for s in 0..config.seeds as u64 {
        let seed = config.seed + s;
        let (w, a) = config.model.initial_weights(seed);
        let model = model_for_kappas(
            &w,
            &a,
            config.model.width,
            config.model.input_dim,
            &config.kappas,
            &ctx.device,
        );
        let mc = MonteCarlo {
            samples: config.mc_samples,
            seed,
        };
        for terms in decompose(
            &model,
            x.clone(),
            y.clone(),
            mc,
            config.sample_chunk,
            &ctx.device,
        ) {
            let inside = terms.mc_masked.is_some_and(|e| e.covers(terms.exact));
            rows.push(Row {
                seed,
                terms,
                exact_in_mc_interval: inside,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    rows
}

/// Per-κ means over the networks.
pub fn summarize(config: &DecompositionConfig, rows: &[Row]) -> Vec<KappaSummary> {
    config
        .kappas
        .iter()
        .map(|&kappa| {
            let group: Vec<&Row> = rows.iter().filter(|r| r.terms.kappa == kappa).collect();
            let mean = |f: &dyn Fn(&Row) -> f64| {
                mean_std(&group.iter().map(|r| f(r)).collect::<Vec<_>>()).0
            };
            KappaSummary {
                kappa,
                clean: mean(&|r| r.terms.clean),
                mc_masked: mean(&|r| r.terms.mc_masked.map_or(f64::NAN, |e| e.mean)),
                exact: mean(&|r| r.terms.exact),
                proxy: mean(&|r| r.terms.proxy),
                variance: mean(&|r| r.terms.variance),
                regularizer: mean(&|r| r.terms.regularizer),
                proxy_gap: mean(&|r| (r.terms.proxy - r.terms.exact) / r.terms.exact),
                exact_in_interval: group.iter().filter(|r| r.exact_in_mc_interval).count(),
                networks: group.len(),
            }
        })
        .collect()
}

fn write_outputs(
    config: &DecompositionConfig,
    rows: &[Row],
    summary: &[KappaSummary],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Csv::new(&[
        "kappa",
        "seed",
        "clean",
        "mc_masked",
        "mc_masked_se",
        "exact",
        "smoothed_sse",
        "variance",
        "exact_in_mc_interval",
        "mc_linearized",
        "mc_linearized_se",
        "proxy",
        "proxy_sse",
        "regularizer",
        "link",
    ]);
    for r in rows {
        let t = &r.terms;
        let est = |e: Option<gaussmask_regularizer::Estimate>| {
            e.map_or((String::new(), String::new()), |e| {
                (e.mean.to_string(), e.se.to_string())
            })
        };
        let (mm, mms) = est(t.mc_masked);
        let (ml, mls) = est(t.mc_linearized);
        csv.row(&[
            t.kappa.to_string(),
            r.seed.to_string(),
            t.clean.to_string(),
            mm,
            mms,
            t.exact.to_string(),
            t.smoothed_sse.to_string(),
            t.variance.to_string(),
            r.exact_in_mc_interval.to_string(),
            ml,
            mls,
            t.proxy.to_string(),
            t.proxy_sse.to_string(),
            t.regularizer.to_string(),
            t.link.to_string(),
        ]);
    }
    ctx.write("decomposition.csv", csv.into_bytes())?;
    ctx.write_json("summary.json", &summary)?;

    // Seed 0's network (the first) as curves over κ, MC with its 95% interval as a band.
    let first: Vec<&Row> = rows.iter().filter(|r| r.seed == config.seed).collect();
    let curve = |label: &str, f: &dyn Fn(&Row) -> f64, dashed| Series {
        label: label.into(),
        points: first.iter().map(|r| (r.terms.kappa, f(r))).collect(),
        band: None,
        dashed,
        color: None,
    };
    let mut mc = curve(
        "Monte Carlo masked loss",
        &|r| r.terms.mc_masked.map_or(f64::NAN, |e| e.mean),
        false,
    );
    mc.band = Some(
        first
            .iter()
            .map(|r| {
                r.terms.mc_masked.map_or((f64::NAN, f64::NAN), |e| {
                    (e.mean - 1.96 * e.se, e.mean + 1.96 * e.se)
                })
            })
            .collect(),
    );
    let plot = LinePlot {
        title: format!(
            "Expected masked loss and its terms (n={}, d={}, m={}, {} masks)",
            config.data.n, config.data.d, config.model.width, config.mc_samples
        ),
        x_label: "κ".into(),
        y_label: "½Σ over samples".into(),
        log_x: true,
        log_y: true,
        series: vec![
            mc,
            curve("exact (A) = smoothed SSE + V", &|r| r.terms.exact, true),
            curve("proxy (B) = proxy SSE + R", &|r| r.terms.proxy, false),
            curve("variance term ½ΣV", &|r| r.terms.variance, false),
            curve("regularizer ½ΣR", &|r| r.terms.regularizer, false),
            curve("clean loss", &|r| r.terms.clean, true),
        ],
        legend_left: true,
    };
    ctx.plot(&plot, "decomposition")
}

/// Prints the per-κ table.
pub fn print_table(summary: &[KappaSummary]) {
    println!(
        "{:>6}  {:>11}  {:>11}  {:>11}  {:>9}  {:>11}  {:>11}  {:>11}  {:>10}",
        "kappa",
        "clean",
        "MC masked",
        "exact (A)",
        "A in CI",
        "proxy (B)",
        "½ΣV",
        "½ΣR",
        "proxy gap"
    );
    for s in summary {
        println!(
            "{:>6}  {:>11.5e}  {:>11.5e}  {:>11.5e}  {:>9}  {:>11.5e}  {:>11.4e}  {:>11.4e}  {:>9.2}%",
            s.kappa,
            s.clean,
            s.mc_masked,
            s.exact,
            format!("{}/{}", s.exact_in_interval, s.networks),
            s.proxy,
            s.variance,
            s.regularizer,
            100.0 * s.proxy_gap
        );
    }
}
