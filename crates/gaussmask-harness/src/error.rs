//! User-facing errors: one line, and an exit code.

use std::fmt;
use std::path::Path;

/// An error reported to the user as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct HarnessError {
    message: String,
    code: u8,
}

impl HarnessError {
    /// Bad input (config, flags, files): exit code 2.
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: 2,
        }
    }

    /// A run that started but failed (e.g. diverged): exit code 1.
    pub fn run(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: 1,
        }
    }

    /// A run stopped by SIGINT/SIGTERM after saving its checkpoint: exit code 130.
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: 130,
        }
    }

    /// An I/O failure on `path`.
    pub fn io(what: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::input(format!("cannot {what} {}: {err}", path.display()))
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
