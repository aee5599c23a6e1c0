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

/// What `run.json` records about a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// Experiment id.
    pub experiment: String,
    /// gaussmask version.
    pub version: String,
    /// `git rev-parse HEAD` of the working directory, when available.
    pub git_revision: Option<String>,
    /// Backend name.
    pub backend: String,
    /// Device description.
    pub device: String,
    /// Float type.
    pub dtype: String,
    /// Base seed of the run.
    pub seed: u64,
    /// Smoke mode.
    pub smoke: bool,
    /// Command line.
    pub command: Vec<String>,
    /// Start time (UTC).
    pub started: String,
    /// Wall time of the whole run in seconds (set at the end).
    pub wall_time_s: f64,
    /// Rayon worker threads available to CPU backends.
    pub threads: usize,
    /// The CPU model (`/proc/cpuinfo`'s model name, where there is one).
    pub cpu: String,
    /// The vector extensions the CPU kernels can pick from at run time (they sum in different
    /// orders, so long f32 runs agree to the bit only between CPUs with the same list).
    pub cpu_features: Vec<String>,
}

/// The CPU's model name, or the architecture where it cannot be read.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The vector extensions of this CPU that the matrix kernels dispatch on.
pub fn cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut found: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) { found.push($f.to_string()); })*
            };
        }
        probe!(
            "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon".to_string());
        }
    }
    found
}

impl RunContext {
    pub(crate) fn new(
        device: Device,
        backend: Backend,
        dtype: Dtype,
        smoke: bool,
        dir: RunDir,
        experiment: &str,
        seed: u64,
    ) -> Self {
        let record = RunRecord {
            experiment: experiment.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: git_revision(),
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
            save_weights: false,
            diagnostics: None,
            checkpoints: crate::checkpoint::Checkpoints::new(PathBuf::new(), 0),
            dir,
            command: format!("gaussmask run {experiment}"),
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

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
