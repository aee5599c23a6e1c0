//! Which of a run's units a process runs: all of them, or shard I of N (`--shard I/N`).

/// Which part of a run's units a process runs (`--shard I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard's index, `0 ≤ index < count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The indices (into the run's units) that this shard runs.
    pub fn select(self, units: usize) -> Vec<usize> {
        (0..units)
            .filter(|k| k % self.count == self.index)
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

pub(crate) fn parse_shard(text: &str) -> Result<Shard, String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("expected I/N (e.g. 0/4), got '{text}'"))?;
    let (index, count) = match (i.trim().parse::<usize>(), n.trim().parse::<usize>()) {
        (Ok(i), Ok(n)) => (i, n),
        _ => return Err(format!("expected two integers I/N, got '{text}'")),
    };
    if count == 0 || index >= count {
        return Err(format!("need 0 ≤ I < N, got {index}/{count}"));
    }
    Ok(Shard { index, count })
}
