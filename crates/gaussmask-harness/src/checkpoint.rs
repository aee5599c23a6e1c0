//! Checkpoints and resume. A run that can be interrupted keeps its checkpoint beside the run
//! directory it will become, in `<parent>/.<name>.checkpoint/`: the resolved config, the run's
//! options, and whatever state its experiment saves (each file written atomically). SIGINT and
//! SIGTERM set a flag the training loops poll: they save a checkpoint and stop, the run exits
//! with code 130 and no result, and `gaussmask run <id> --resume <run dir>` continues it. A
//! second Ctrl-C stops at once. The checkpoint folder is removed when the run commits.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::output::write_atomic;

/// The checkpoint folder of the run that will be committed to `target`.
pub fn folder_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    target.with_file_name(format!(".{name}.checkpoint"))
}

/// What a resumed run takes over from the run it continues (besides the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOptions {
    /// Experiment id.
    pub experiment: String,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Smoke mode.
    pub smoke: bool,
    /// `--save-weights`.
    pub save_weights: bool,
}

/// A run's checkpoint folder.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dir: PathBuf,
    every: usize,
}

impl Checkpoints {
    pub(crate) fn new(dir: PathBuf, every: usize) -> Self {
        Self { dir, every }
    }

    /// Steps between two checkpoints of a training loop (0: only when interrupted).
    pub fn every(&self) -> usize {
        self.every
    }

    /// Whether a loop that has just done `step` steps should save now.
    pub fn due(&self, step: usize) -> bool {
        interrupted() || (self.every > 0 && step.is_multiple_of(self.every))
    }

    /// Saves `name` in the checkpoint folder, atomically.
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<(), HarnessError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| HarnessError::io("create checkpoint folder", &self.dir, &e))?;
        write_atomic(&self.dir.join(name), bytes).map(|_| ())
    }

    /// The saved `name`, if any.
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join(name)).ok()
    }

    /// Removes the saved `name` (it is superseded), ignoring a missing file.
    pub fn remove(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether SIGINT or SIGTERM arrived: loops save and stop.
pub fn interrupted() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Installs the SIGINT/SIGTERM handlers (once): the first signal sets the flag, a second one
/// ends the process at once with code 130.
pub(crate) fn install_signal_handlers() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag().clone());
            let _ = signal_hook::flag::register(signal, flag().clone());
        }
    });
}

/// The error an interrupted run ends with: exit 130, and how to go on.
pub fn interrupted_error(id: &str, target: &Path, what: &str) -> HarnessError {
    HarnessError::interrupted(format!(
        "interrupted {what}: checkpoint saved; continue with: gaussmask run {id} --resume {}",
        target.display()
    ))
}
