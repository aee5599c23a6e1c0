//! What `--diagnostics` asks for: a run option that the checkpoint saves and the run context
//! carries, below both (and below the command line that parses it).

/// What `--diagnostics` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiagnosticsRequest {
    /// Steps between two diagnostics rows (the last step always has one).
    pub every: usize,
    /// Whether each row has λ_min(H(k)).
    pub gram: bool,
}

pub(crate) fn parse_diagnostics(text: &str) -> Result<DiagnosticsRequest, String> {
    let mut every = None;
    let mut gram = false;
    for part in text.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("every", n)) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => every = Some(n),
                _ => return Err(format!("every must be an integer ≥ 1, got '{n}'")),
            },
            None if part == "gram" => gram = true,
            _ => return Err(format!("unknown part '{part}' (expected every=N[,gram])")),
        }
    }
    let every = every.ok_or("expected every=N[,gram]")?;
    Ok(DiagnosticsRequest { every, gram })
}
