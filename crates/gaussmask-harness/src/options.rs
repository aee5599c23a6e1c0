//! The options of a run (`gaussmask run <id> …` and every way of running an experiment) and
//! the config they resolve to.

use std::path::PathBuf;

use clap::Args;
use toml::{Table, Value};

use crate::backend::{Backend, Dtype};
use crate::config;
use crate::diagnostics::{DiagnosticsRequest, parse_diagnostics};
use crate::error::HarnessError;
use crate::run::Experiment;

/// The options of every run: an experiment's (`gaussmask run`) and `gaussmask train`'s.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonOptions {
    /// Config file (TOML); default the built-in one `gaussmask config <id>` prints.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. `--set train.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Float type (f64 on CPU backends only).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Run directory to create (must not exist); default `results/<id>/<UTC time>`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Base seed (overrides the config's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue an interrupted run: RUN_DIR is the directory it was writing to (printed when it
    /// started and when it stopped). Its own config and options are used.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Training steps between two checkpoints of runs that checkpoint (0: only on
    /// SIGINT/SIGTERM).
    #[arg(long, value_name = "STEPS", default_value_t = 500)]
    pub checkpoint_every: usize,
}

/// Options shared by every way of running an experiment: the common ones, and those only an
/// experiment takes.
#[derive(Args, Debug, Clone, Default)]
pub struct RunOptions {
    /// Config, overrides, backend, dtype, output, seed, resume, checkpoints.
    #[command(flatten)]
    pub common: CommonOptions,
    /// Run the tiny version from the config's `[smoke]` section.
    #[arg(long)]
    pub smoke: bool,
    /// Export the trained weights of every replica as .npy files and one safetensors file.
    #[arg(long)]
    pub save_weights: bool,
    /// NTK diagnostics during training: `every=N` logs ‖W_k − W_0‖_F/‖W_0‖_F and the fraction
    /// of flipped activation patterns every N steps (to diagnostics.csv) and λ₀ of the data;
    /// `every=N,gram` adds λ_min of the finite-width Gram H(k) (an n×n eigen-solve per row).
    #[arg(long, value_name = "every=N[,gram]", value_parser = parse_diagnostics)]
    pub diagnostics: Option<DiagnosticsRequest>,
    /// Run only shard I of N (the units k with k mod N = I) into a shard directory, for
    /// `gaussmask merge`.
    #[arg(long, value_name = "I/N", value_parser = crate::selection::parse_shard)]
    pub shard: Option<crate::selection::Shard>,
}

/// Loads, resolves and validates the config of `experiment` under `options`.
pub fn resolve_config(
    experiment: &dyn Experiment,
    options: &RunOptions,
) -> Result<Table, HarnessError> {
    let table = match &options.common.config {
        Some(path) => config::read_file(path)?,
        None => config::parse_text(
            experiment.default_config(),
            &format!("configs/{}.toml", experiment.id()),
        )?,
    };
    let mut table = config::resolve_smoke(table, options.smoke)?;
    for assignment in &options.common.set {
        config::apply_set(&mut table, assignment)?;
    }
    if let Some(seed) = options.common.seed {
        let seed = i64::try_from(seed)
            .map_err(|_| HarnessError::input(format!("--seed must be < 2^63, got {seed}")))?;
        table.insert("seed".into(), Value::Integer(seed));
    }
    check_resolved(experiment, &table, options)?;
    Ok(table)
}

/// The checks of a resolved config under the run's options.
pub(crate) fn check_resolved(
    experiment: &dyn Experiment,
    table: &Table,
    options: &RunOptions,
) -> Result<(), HarnessError> {
    experiment.check(table)?;
    if options.shard.is_some() {
        if experiment.unit_keys(table)?.is_none() {
            return Err(crate::run::not_units(experiment.id()));
        }
        if options.save_weights || options.diagnostics.is_some() {
            return Err(HarnessError::input(
                "--shard runs without --save-weights and --diagnostics (run those in one process)",
            ));
        }
    }
    if options.diagnostics.is_some() && !experiment.has_diagnostics() {
        return Err(HarnessError::input(format!(
            "--diagnostics: experiment '{}' does not train a two-layer network step by step",
            experiment.id()
        )));
    }
    Ok(())
}
