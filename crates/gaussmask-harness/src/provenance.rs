//! What identifies a run and its files: the record `run.json` holds (commit, command, backend,
//! CPU and its vector extensions) and the SHA-256 of file contents.

use serde::{Deserialize, Serialize};

/// What `run.json` records about a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Experiment id.
    pub experiment: String,
    /// gaussmask version.
    pub version: String,
    /// `git rev-parse HEAD` of the working directory, when available.
    pub git_revision: Option<String>,
    /// The commit the binary was built from (changes to files not yet committed are not
    /// seen), when it was built in a git checkout.
    #[serde(default)]
    pub build_revision: Option<String>,
    /// Whether tracked files of the working directory differed from `git_revision` when the
    /// run started (then neither revision names the code that ran).
    #[serde(default)]
    pub uncommitted_changes: Option<bool>,
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

/// `git rev-parse HEAD` of the working directory, when there is one.
pub(crate) fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether tracked files of the working directory differ from its `HEAD`, when it is a git
/// checkout.
pub(crate) fn uncommitted_changes() -> Option<bool> {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(!out.stdout.is_empty())
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The commit this binary was built from, when it was built in a git checkout.
pub(crate) fn build_revision() -> Option<String> {
    Some(env!("GAUSSMASK_BUILD_REVISION"))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}
