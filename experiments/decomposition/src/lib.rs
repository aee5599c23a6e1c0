//! Experiment `decomposition` (the paper's Theorem 4.1): for random networks on the trajectories
//! data, the expected masked loss by Monte Carlo against its exact closed form (A), the proxy (B),
//! and the size of each term, over a grid of κ.

use gaussmask_data::SyntheticConfig;
use gaussmask_harness::InputError;
use gaussmask_harness::config::require;
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::records::{Record, Tables};
use gaussmask_harness::{HarnessError, RunContext, Study, Unit, mean_std};

use gaussmask_nn::TwoLayerReluConfig;
use gaussmask_regularizer::{MonteCarlo, decompose, model_for_kappas};
use serde::{Deserialize, Serialize};

mod tables;

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
    pub kappas: gaussmask_nn::KappaGrid,
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
    /// Checks every value and fills the defaults that depend on other fields.
    pub fn resolve(&mut self) -> Result<(), String> {
        require(self.seeds >= 1, "seeds", "≥ 1", self.seeds)?;
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
        self.model.validate()?;
        // The exact form holds every pair of neurons for `sample_chunk` samples of every κ,
        // a few tensors deep (Φ₂ and its arguments).
        let chunk = self.sample_chunk.min(self.data.n);
        let m = self.model.width;
        Ok(gaussmask_harness::config::require_memory(
            "the exact expected loss",
            gaussmask_harness::config::f64_bytes(&[8, self.kappas.len(), chunk, m, m]),
            "model.width, sample_chunk, kappas",
        )?)
    }
}

/// One row of the result: a network (seed) at one κ.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

impl Study for Decomposition {
    type Config = DecompositionConfig;
    /// The network's seed.
    type Unit = u64;
    /// The network at every κ.
    type Output = Vec<Row>;

    fn id(&self) -> &'static str {
        "decomposition"
    }

    fn about(&self) -> &'static str {
        "Thm 4.1: expected masked loss by Monte Carlo vs exact (A) and proxy (B), term by term"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/decomposition.toml")
    }

    fn validate(&self, config: &mut DecompositionConfig) -> Result<(), InputError> {
        Ok(config.resolve()?)
    }

    /// One unit per random network.
    fn units(&self, config: &DecompositionConfig) -> Vec<Unit<u64>> {
        (0..config.seeds as u64)
            .map(|s| Unit::new(format!("seed={}", config.seed + s), config.seed + s))
            .collect()
    }

    fn run_unit(
        &self,
        config: &DecompositionConfig,
        unit: &Unit<u64>,
        ctx: &RunContext,
    ) -> Result<Vec<Row>, HarnessError> {
        Ok(evaluate_network(config, unit.spec, ctx))
    }

    fn reduce(
        &self,
        config: &DecompositionConfig,
        outputs: Vec<(Unit<u64>, Vec<Row>)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let rows: Vec<Row> = outputs.into_iter().flat_map(|(_, r)| r).collect();
        let summary = summarize(config, &rows);
        write_outputs(config, &rows, &summary, ctx)?;
        print_table(&summary);
        Ok(())
    }

    fn tables(&self, record: &Record) -> Result<Tables, HarnessError> {
        tables::tables(record)
    }
}

/// The network of `seed` at every κ.
pub fn evaluate_network(config: &DecompositionConfig, seed: u64, ctx: &RunContext) -> Vec<Row> {
    let data = config.data.generate();
    let (x, y) = data.all_tensors(&ctx.device);
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
    decompose(&model, x, y, mc, config.sample_chunk, &ctx.device)
        .into_iter()
        .map(|terms| {
            let inside = terms.mc_masked.is_some_and(|e| e.covers(terms.exact));
            Row {
                seed,
                terms,
                exact_in_mc_interval: inside,
            }
        })
        .collect()
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

/// One line of `decomposition.csv` (an estimate that was not made is empty).
#[derive(Serialize)]
struct CsvRow {
    kappa: f64,
    seed: u64,
    clean: f64,
    mc_masked: Option<f64>,
    mc_masked_se: Option<f64>,
    exact: f64,
    smoothed_sse: f64,
    variance: f64,
    exact_in_mc_interval: bool,
    mc_linearized: Option<f64>,
    mc_linearized_se: Option<f64>,
    proxy: f64,
    proxy_sse: f64,
    regularizer: f64,
    link: f64,
}

fn write_outputs(
    config: &DecompositionConfig,
    rows: &[Row],
    summary: &[KappaSummary],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let csv: Vec<CsvRow> = rows
        .iter()
        .map(|r| {
            let t = &r.terms;
            CsvRow {
                kappa: t.kappa,
                seed: r.seed,
                clean: t.clean,
                mc_masked: t.mc_masked.map(|e| e.mean),
                mc_masked_se: t.mc_masked.map(|e| e.se),
                exact: t.exact,
                smoothed_sse: t.smoothed_sse,
                variance: t.variance,
                exact_in_mc_interval: r.exact_in_mc_interval,
                mc_linearized: t.mc_linearized.map(|e| e.mean),
                mc_linearized_se: t.mc_linearized.map(|e| e.se),
                proxy: t.proxy,
                proxy_sse: t.proxy_sse,
                regularizer: t.regularizer,
                link: t.link,
            }
        })
        .collect();
    ctx.write_csv("decomposition.csv", &csv)?;
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
