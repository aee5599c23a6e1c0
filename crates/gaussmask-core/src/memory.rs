//! What a run may hold at once: sizes from a config are checked against this machine's memory
//! before anything starts, since a run the kernel kills mid-way ends without an error message.

use crate::InputError;

/// This machine's memory in bytes (`MemTotal` of `/proc/meminfo`), where it can be read.
pub fn physical_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses `what`, which must hold `bytes` at once (its own estimate, saturating), when that is
/// more than this machine's memory. `fields` are the settings that make it that large.
///
/// # Errors
/// A message naming `fields`, the estimate and the memory there is.
pub fn require_memory(what: &str, bytes: u128, fields: &str) -> Result<(), InputError> {
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    match physical_memory() {
        Some(total) if bytes > total => Err(format!(
            "{fields}: {what} needs about {:.1} GiB at once, more than this machine's {:.1} GiB",
            gib(bytes),
            gib(total)
        )
        .into()),
        _ => Ok(()),
    }
}

/// The product of `sizes` as a byte count of f64 values, saturating at `u128::MAX`.
pub fn f64_bytes(sizes: &[usize]) -> u128 {
    sizes
        .iter()
        .fold(8u128, |acc, &s| acc.saturating_mul(s as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_any_machine_are_refused_naming_the_fields() {
        assert_eq!(f64_bytes(&[2, 3]), 48);
        assert_eq!(f64_bytes(&[usize::MAX, usize::MAX, usize::MAX]), u128::MAX);
        if physical_memory().is_some() {
            let e = require_memory("the data", u128::MAX, "data.n, data.d").unwrap_err();
            assert!(e.starts_with("data.n, data.d: the data needs about"), "{e}");
            require_memory("the data", 1 << 20, "data.n").unwrap();
        }
    }
}
