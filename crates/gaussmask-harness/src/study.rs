//! Experiments as units of work. A [`Study`] declares its config type, the independent pieces
//! of work a config makes (each with a stable key), how one piece runs, and a reduce step that
//! turns the pieces' results into the run's files. Every `Study` is an [`Experiment`]; the
//! harness does the rest:
//!
//! - parses and validates the config once (`validate` names the field);
//! - keeps every finished unit in the checkpoint folder, so an interrupted or killed run
//!   continues with `--resume` and recomputes nothing it had finished;
//! - runs a shard (`--shard I/N`: the units `k` with `k mod N = I`) into a shard directory,
//!   and merges shards (`gaussmask merge`) by running the same reduce step;
//! - writes CSV tables from serde rows ([`RunContext::write_csv`]).
//!
//! Results go through the checkpoint codec (RON, exact float round trips) on every path, fresh
//! or resumed or merged, so the reduce step sees the same values and writes the same bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::Table;

use crate::InputError;
use crate::checkpoint::{self, decode, encode};
use crate::error::HarnessError;
use crate::records::{Record, Tables};
use crate::run::{Experiment, RunContext};

/// One unit of work: a stable key (a file name: letters, digits, `.`, `_`, `-`, `=`) and what
/// the experiment needs to run it.
#[derive(Clone, Debug)]
pub struct Unit<U> {
    /// Stable key: the same config gives the same keys, in the same order.
    pub key: String,
    /// The experiment's description of the unit.
    pub spec: U,
}

impl<U> Unit<U> {
    /// A unit.
    pub fn new(key: impl Into<String>, spec: U) -> Self {
        Self {
            key: key.into(),
            spec,
        }
    }
}

/// A unit's output with the wall time the unit took.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Timed<T> {
    /// The output.
    pub value: T,
    /// Wall time, s.
    pub seconds: f64,
}

impl<T> Timed<T> {
    /// Runs `work` and times it.
    ///
    /// # Errors
    /// The error of `work`.
    pub fn run<E>(work: impl FnOnce() -> Result<T, E>) -> Result<Self, E> {
        let started = std::time::Instant::now();
        let value = work()?;
        Ok(Self {
            value,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The total wall time of `outputs`.
    pub fn total<'a, U: 'a>(outputs: impl IntoIterator<Item = &'a (Unit<U>, Self)>) -> f64
    where
        T: 'a,
    {
        outputs.into_iter().map(|(_, t)| t.seconds).sum()
    }
}

/// An experiment made of independent units of work and a reduce step.
pub trait Study: Sync {
    /// The config (`configs/<id>.toml` deserializes into it; unknown keys are refused).
    type Config: Serialize + DeserializeOwned + Sync;
    /// What one unit is (a κ, a cell, a (dataset, model, κ, seed) training, …).
    type Unit: Sync;
    /// What one unit produces; kept on disk as it finishes.
    type Output: Serialize + DeserializeOwned;

    /// Identifier used on the command line and as the results folder name.
    fn id(&self) -> &'static str;
    /// One-line description.
    fn about(&self) -> &'static str;
    /// The default config (the text of `configs/<id>.toml`).
    fn default_config(&self) -> &'static str;
    /// Checks a parsed config and fills the defaults that depend on other fields.
    ///
    /// # Errors
    /// A message naming the field (`seeds must be ≥ 1, got 0`).
    fn validate(&self, config: &mut Self::Config) -> Result<(), InputError>;
    /// The units of `config`, in the order the reduce step receives them.
    fn units(&self, config: &Self::Config) -> Vec<Unit<Self::Unit>>;
    /// Runs one unit.
    ///
    /// # Errors
    /// A failed or interrupted unit (units that checkpoint inside use `ctx.checkpoints` under
    /// their key).
    fn run_unit(
        &self,
        config: &Self::Config,
        unit: &Unit<Self::Unit>,
        ctx: &RunContext,
    ) -> Result<Self::Output, HarnessError>;
    /// Writes the run's files from every unit's output (in [`units`](Self::units) order).
    ///
    /// # Errors
    /// A file that cannot be written.
    fn reduce(
        &self,
        config: &Self::Config,
        outputs: Vec<(Unit<Self::Unit>, Self::Output)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError>;
    /// Whether the experiment honours `--diagnostics`.
    fn has_diagnostics(&self) -> bool {
        false
    }
    /// The command line that runs it (see [`Experiment::command`]).
    fn command(&self) -> String {
        format!("gaussmask run {}", self.id())
    }
    /// The README blocks and claims made from a recorded run (see [`Experiment::tables`]).
    ///
    /// # Errors
    /// A file or value the record lacks, named.
    fn tables(&self, _record: &Record) -> Result<Tables, HarnessError> {
        Ok(Tables::default())
    }
}

/// Parses and validates `table` as `S`'s config.
///
/// # Errors
/// An unknown or mistyped key, or a value `validate` refuses.
pub fn parse_config<S: Study + ?Sized>(
    study: &S,
    table: &Table,
) -> Result<S::Config, HarnessError> {
    let mut config: S::Config = crate::config::parse(table)?;
    study.validate(&mut config).map_err(HarnessError::input)?;
    Ok(config)
}

/// Whether `key` can name a file on every system (and a Slurm log).
fn key_ok(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '='))
}

fn checked_units<S: Study + ?Sized>(
    study: &S,
    config: &S::Config,
) -> Result<Vec<Unit<S::Unit>>, HarnessError> {
    let units = study.units(config);
    let mut seen = std::collections::HashSet::new();
    for u in &units {
        if !key_ok(&u.key) || !seen.insert(u.key.as_str()) {
            return Err(HarnessError::run(format!(
                "internal error: {} made the unit key '{}' twice or with a character that \
                 cannot name a file",
                study.id(),
                u.key
            )));
        }
    }
    Ok(units)
}

/// Runs the units at `select` of `units`, keeping each in the checkpoint folder, and returns
/// each one's key and encoded output.
fn run_selected<S: Study + ?Sized>(
    study: &S,
    config: &S::Config,
    units: &[Unit<S::Unit>],
    select: &[usize],
    ctx: &RunContext,
) -> Result<Vec<(String, Vec<u8>)>, HarnessError> {
    let mut out = Vec::with_capacity(select.len());
    for (done, &k) in select.iter().enumerate() {
        let unit = &units[k];
        let kept = ctx
            .checkpoints
            .dir()
            .join(format!("{}.done.ron", unit.key))
            .is_file();
        if !kept && checkpoint::interrupted() {
            return Err(ctx.interrupted_error(&format!("after {done} of {} units", select.len())));
        }
        let started = std::time::Instant::now();
        let value = ctx
            .checkpoints
            .unit(&unit.key, || study.run_unit(config, unit, ctx))?;
        eprintln!(
            "unit {}/{} {}: {}",
            done + 1,
            select.len(),
            unit.key,
            if kept {
                "kept from the checkpoint".to_string()
            } else {
                format!("done in {:.1} s", started.elapsed().as_secs_f64())
            }
        );
        out.push((unit.key.clone(), encode(&value)?));
    }
    Ok(out)
}

/// Decodes every unit's output (in unit order) and runs the reduce step.
fn reduce_encoded<S: Study + ?Sized>(
    study: &S,
    config: &S::Config,
    units: Vec<Unit<S::Unit>>,
    outputs: &[Vec<u8>],
    ctx: &mut RunContext,
) -> Result<(), HarnessError> {
    if units.len() != outputs.len() {
        return Err(HarnessError::run(format!(
            "internal error: {} units but {} outputs",
            units.len(),
            outputs.len()
        )));
    }
    let mut pairs = Vec::with_capacity(units.len());
    for (unit, bytes) in units.into_iter().zip(outputs) {
        let value: S::Output = decode(bytes)
            .map_err(|e| HarnessError::input(format!("the output of unit {}: {e}", unit.key)))?;
        pairs.push((unit, value));
    }
    study.reduce(config, pairs, ctx)
}

impl<S: Study> Experiment for S {
    fn id(&self) -> &'static str {
        Study::id(self)
    }

    fn about(&self) -> &'static str {
        Study::about(self)
    }

    fn default_config(&self) -> &'static str {
        Study::default_config(self)
    }

    fn check(&self, config: &Table) -> Result<(), HarnessError> {
        let config = parse_config(self, config)?;
        checked_units(self, &config).map(|_| ())
    }

    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError> {
        let config = parse_config(self, config)?;
        let units = checked_units(self, &config)?;
        let all: Vec<usize> = (0..units.len()).collect();
        let outputs: Vec<Vec<u8>> = run_selected(self, &config, &units, &all, ctx)?
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        reduce_encoded(self, &config, units, &outputs, ctx)
    }

    fn has_diagnostics(&self) -> bool {
        Study::has_diagnostics(self)
    }

    fn checkpoints(&self) -> bool {
        true
    }

    fn command(&self) -> String {
        Study::command(self)
    }

    fn tables(&self, record: &Record) -> Result<Tables, HarnessError> {
        Study::tables(self, record)
    }

    fn unit_keys(&self, config: &Table) -> Result<Option<Vec<String>>, HarnessError> {
        let config = parse_config(self, config)?;
        let units = checked_units(self, &config)?;
        Ok(Some(units.into_iter().map(|u| u.key).collect()))
    }

    fn run_units(
        &self,
        config: &Table,
        select: &[usize],
        ctx: &RunContext,
    ) -> Result<Vec<(String, Vec<u8>)>, HarnessError> {
        let config = parse_config(self, config)?;
        let units = checked_units(self, &config)?;
        run_selected(self, &config, &units, select, ctx)
    }

    fn reduce_units(
        &self,
        config: &Table,
        outputs: &[Vec<u8>],
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let config = parse_config(self, config)?;
        let units = checked_units(self, &config)?;
        reduce_encoded(self, &config, units, outputs, ctx)
    }
}
