//! User-facing errors: one line, and an exit code.

use std::fmt;
use std::path::Path;

/// An error reported to the user as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct HarnessError {
    message: String,
    code: u8,
    // The cause lies outside the run's config (a full disk): the same run can go on once it
    // is fixed, so its finished work is worth keeping.
    retryable: bool,
}

impl HarnessError {
    /// The exit code of bad input.
    pub const INPUT: u8 = 2;
    /// The exit code of a run that failed after it started.
    pub const FAILED: u8 = 1;
    /// The exit code of a run stopped by SIGINT/SIGTERM (resumable).
    pub const INTERRUPTED: u8 = 130;

    /// Bad input (config, flags, files): exit code 2.
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: Self::INPUT,
            retryable: false,
        }
    }

    /// A run that started but failed (e.g. diverged): exit code 1.
    pub fn run(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: Self::FAILED,
            retryable: false,
        }
    }

    /// A run stopped by SIGINT/SIGTERM after saving its checkpoint: exit code 130.
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: Self::INTERRUPTED,
            retryable: true,
        }
    }

    /// An I/O failure on `path` while checking input or preparing a run: exit code 2.
    pub fn io(what: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::input(format!("cannot {what} {}: {err}", path.display()))
    }

    /// A file of a started run that could not be written (disk full, permissions): exit code
    /// 1, like every failure after the run started.
    pub fn write_failed(what: &str, path: &Path, err: &std::io::Error) -> Self {
        Self {
            retryable: true,
            ..Self::run(format!("cannot {what} {}: {err}", path.display()))
        }
    }

    /// Whether the run would fail again as it is (a diverging training, a NaN result): its
    /// checkpoint is of no use to `--resume`. Bad input found during the run (a damaged
    /// checkpoint file), an interruption and a failed write are not.
    pub fn repeats(&self) -> bool {
        self.code == Self::FAILED && !self.retryable
    }

    /// The same error with `hint` appended (e.g. how to continue).
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.message = one_line(format!("{}; {hint}", self.message));
        self
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The message (one line).
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn one_line(s: String) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}
