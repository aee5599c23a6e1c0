//! The library crates' error for input that cannot be used.

use std::fmt;

/// Input that cannot be used (a config value, a data file, a size this machine cannot hold):
/// one line that names the field or the file and says what is expected, e.g.
/// `train.lr must be a finite number > 0, got -1`. The library crates' config checks and
/// readers return it; the command line reports it with exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError(String);

impl InputError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// The error reads as its message (`e.contains("train.lr")`).
impl std::ops::Deref for InputError {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for InputError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for InputError {
    fn from(message: &str) -> Self {
        Self(message.to_string())
    }
}

impl From<InputError> for String {
    fn from(e: InputError) -> Self {
        e.0
    }
}
