//! What an experiment sees while it runs: its config, device, output directory and progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use toml::Table;

use crate::backend::{Backend, Dtype};
use crate::error::HarnessError;
use crate::output::{RunDir, utc_stamp};
use crate::provenance::{
    RunRecord, build_revision, cpu_features, cpu_model, git_revision, uncommitted_changes,
};
use crate::records::{Record, Tables};

/// An experiment the harness can run.
pub trait Experiment: Sync {
    /// Identifier used on the command line and as the results folder name.
    fn id(&self) -> &'static str;
    /// One-line description.
    fn about(&self) -> &'static str;
    /// The experiment's default config (the text of `configs/<id>.toml`).
    fn default_config(&self) -> &'static str;
    /// Parses and validates a resolved config without running anything.
    fn check(&self, config: &Table) -> Result<(), HarnessError>;
    /// Runs the experiment, writing its files through `ctx`.
    fn run(&self, config: &Table, ctx: &mut RunContext) -> Result<(), HarnessError>;
    /// Whether the experiment honours `--diagnostics` (the NTK diagnostics of its training).
    fn has_diagnostics(&self) -> bool {
        false
    }
    /// Whether the experiment checkpoints its training (and so can be resumed with `--resume`).
    fn checkpoints(&self) -> bool {
        false
    }
    /// The README blocks and claims this experiment makes from one of its recorded runs
    /// (`gaussmask records tables`): tables read from the record's files, and the statements
    /// the README makes about them, checked. Every record also gets the block `run`.
    ///
    /// # Errors
    /// A file or value the record lacks, named.
    fn tables(&self, _record: &Record) -> Result<Tables, HarnessError> {
        Ok(Tables::default())
    }
    /// The command line that runs it (what an interrupted run tells the user to resume with).
    fn command(&self) -> String {
        format!("gaussmask run {}", self.id())
    }
    /// The keys of the run's units of work, in order; `None` for an experiment that is not
    /// made of units (see [`Study`](crate::study::Study)), which cannot be sharded.
    fn unit_keys(&self, _config: &Table) -> Result<Option<Vec<String>>, HarnessError> {
        Ok(None)
    }
    /// Runs the units at the indices `select` (into [`unit_keys`](Self::unit_keys)) and
    /// returns each one's key and encoded output.
    fn run_units(
        &self,
        _config: &Table,
        _select: &[usize],
        _ctx: &RunContext,
    ) -> Result<Vec<(String, Vec<u8>)>, HarnessError> {
        Err(not_units(self.id()))
    }
    /// Writes the run's files from the encoded outputs of every unit, in unit order.
    fn reduce_units(
        &self,
        _config: &Table,
        _outputs: &[Vec<u8>],
        _ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        Err(not_units(self.id()))
    }
}

/// The experiment `id` among `experiments`.
///
/// # Errors
/// An unknown id, with the list of known ones.
pub fn find_experiment<'a>(
    experiments: &[&'a dyn Experiment],
    id: &str,
) -> Result<&'a dyn Experiment, HarnessError> {
    experiments
        .iter()
        .copied()
        .find(|e| e.id() == id)
        .ok_or_else(|| {
            let ids: Vec<&str> = experiments.iter().map(|e| e.id()).collect();
            HarnessError::input(format!(
                "unknown experiment '{id}' (available: {})",
                ids.join(", ")
            ))
        })
}

/// The error for sharding or merging an experiment that is not made of units.
pub(crate) fn not_units(id: &str) -> HarnessError {
    HarnessError::input(format!(
        "experiment '{id}' is not made of units of work: it cannot be sharded or merged"
    ))
}

/// The run's environment.
pub struct RunContext {
    /// The compute device (plain; call `.autodiff()` for gradients).
    pub device: Device,
    /// Backend of `device`.
    pub backend: Backend,
    /// Float type of `device`.
    pub dtype: Dtype,
    /// Smoke mode (tiny version of the experiment).
    pub smoke: bool,
    /// Export trained weights (`--save-weights`).
    pub save_weights: bool,
    /// NTK diagnostics asked for (`--diagnostics`).
    pub diagnostics: Option<crate::diagnostics::DiagnosticsRequest>,
    /// Where training state is checkpointed, and how often.
    pub checkpoints: crate::checkpoint::Checkpoints,
    pub(crate) dir: RunDir,
    pub(crate) record: RunRecord,
    pub(crate) started: Instant,
    /// What runs the experiment (for the resume hint).
    pub(crate) command: String,
    progress: bool,
}

/// Everything a [`RunContext`] is built from, given whole.
pub(crate) struct RunSetup<'a> {
    pub device: Device,
    pub backend: Backend,
    pub dtype: Dtype,
    pub smoke: bool,
    pub save_weights: bool,
    pub diagnostics: Option<crate::diagnostics::DiagnosticsRequest>,
    pub checkpoints: crate::checkpoint::Checkpoints,
    pub dir: RunDir,
    pub experiment: &'a str,
    /// What runs the experiment (for the resume hint).
    pub command: String,
    pub seed: u64,
}

impl RunContext {
    pub(crate) fn new(setup: RunSetup<'_>) -> Self {
        let RunSetup {
            device,
            backend,
            dtype,
            smoke,
            save_weights,
            diagnostics,
            checkpoints,
            dir,
            experiment,
            command,
            seed,
        } = setup;
        let record = RunRecord {
            experiment: experiment.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: git_revision(),
            build_revision: build_revision(),
            uncommitted_changes: uncommitted_changes(),
            backend: backend.to_string(),
            device: format!("{device:?}"),
            dtype: dtype.to_string(),
            seed,
            smoke,
            command: std::env::args().collect(),
            started: utc_stamp(SystemTime::now(), false),
            wall_time_s: 0.0,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu: cpu_model(),
            cpu_features: cpu_features(),
        };
        Self {
            device,
            backend,
            dtype,
            smoke,
            save_weights,
            diagnostics,
            checkpoints,
            dir,
            command,
            record,
            started: Instant::now(),
            progress: std::io::stderr().is_terminal(),
        }
    }

    /// Writes a file of the run (atomically).
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> Result<(), HarnessError> {
        self.dir.write(name, bytes.as_ref()).map(|_| ())
    }

    /// Writes `name` as a `.npy` file (float64).
    pub fn write_npy(
        &self,
        name: &str,
        array: &gaussmask_data::npy::Array,
    ) -> Result<(), HarnessError> {
        self.write(name, gaussmask_data::npy::encode(array))
    }

    /// Writes named arrays as one safetensors file (float64).
    pub fn write_safetensors(
        &self,
        name: &str,
        tensors: &[(String, gaussmask_data::npy::Array)],
    ) -> Result<(), HarnessError> {
        self.write(name, gaussmask_data::npy::encode_safetensors(tensors))
    }

    /// Writes `name` as a CSV table: a header from the fields of `T`, one line per row (the
    /// `csv` crate's encoding: floats in their shortest round-trip form, text quoted when it
    /// must be).
    pub fn write_csv<T: Serialize>(&self, name: &str, rows: &[T]) -> Result<(), HarnessError> {
        let mut out = csv::Writer::from_writer(Vec::new());
        for row in rows {
            out.serialize(row)
                .map_err(|e| HarnessError::run(format!("cannot encode {name}: {e}")))?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| HarnessError::run(format!("cannot encode {name}: {e}")))?;
        let mut cells = csv::Reader::from_reader(bytes.as_slice());
        for (row, record) in cells.records().flatten().enumerate() {
            if record.iter().any(|c| matches!(c, "NaN" | "inf" | "-inf")) {
                return Err(non_finite(name, &format!("row {}", row + 1)));
            }
        }
        self.write(name, bytes)
    }

    /// Writes `name` as pretty JSON. A non-finite number (which JSON would write as `null`)
    /// is an error, never written.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), HarnessError> {
        if holds_non_finite(value) {
            return Err(non_finite(name, "a value"));
        }
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| HarnessError::run(format!("cannot encode {name}: {e}")))?;
        self.write(name, text + "\n")
    }

    /// Draws a figure as `<stem>.svg` and `<stem>.png`.
    pub fn plot(&self, plot: &crate::plot::LinePlot, stem: &str) -> Result<(), HarnessError> {
        plot.save(&self.dir.staged_path(""), stem)
    }

    /// Where the results will be once the run succeeds.
    pub fn target(&self) -> PathBuf {
        self.dir.target().to_path_buf()
    }

    /// The error that ends a run stopped by SIGINT/SIGTERM once `what` was checkpointed.
    pub fn interrupted_error(&self, what: &str) -> HarnessError {
        crate::checkpoint::interrupted_error(&self.command, self.dir.target(), what)
    }

    /// Writes `run.json` and moves the finished run into place.
    pub(crate) fn finish(mut self) -> Result<(), HarnessError> {
        self.record.wall_time_s = self.elapsed().as_secs_f64();
        self.write_json("run.json", &self.record)?;
        let wall = self.record.wall_time_s;
        let target = self.dir.commit()?;
        println!("results: {} (wall time {wall:.1} s)", target.display());
        Ok(())
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A progress bar over `total` units on stderr; hidden when stderr is not a terminal.
    pub fn progress(&self, total: u64, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }
}

/// The error for an output that would hold a non-finite number: a run never ends with exit 0
/// and a NaN in its results.
fn non_finite(name: &str, at: &str) -> HarnessError {
    HarnessError::run(format!(
        "{name}: {at} is not a finite number (NaN or infinite): the run produced no usable \
         result there (a diverged training or an undefined statistic)"
    ))
}

/// Whether `value` holds a non-finite float: RON, unlike JSON, prints them (`NaN`, `inf`),
/// outside quoted text.
fn holds_non_finite<T: Serialize + ?Sized>(value: &T) -> bool {
    let Ok(text) = ron::to_string(value) else {
        return false;
    };
    let mut bare = String::with_capacity(text.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, c) => bare.push(c),
            _ => {}
        }
    }
    bare.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| t == "NaN" || t == "inf")
}

#[cfg(test)]
mod tests {
    use super::holds_non_finite;

    #[test]
    fn non_finite_values_are_found_outside_text_only() {
        assert!(holds_non_finite(&vec![1.0, f64::NAN]));
        assert!(holds_non_finite(&(f64::NEG_INFINITY, "x")));
        assert!(holds_non_finite(&Some(f32::INFINITY)));
        assert!(!holds_non_finite(&(1.5, None::<f64>, "NaN inf \" NaN")));
        assert!(!holds_non_finite(&("information", 1e308, -0.0)));
    }
}
