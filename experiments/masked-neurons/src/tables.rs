//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, integer, mean_sd};
use gaussmask_nn::kappa_label;

/// `floors`: per scheme, κ and number of subnetworks p, the floor (mean ± sd over seeds) at
/// each number of local steps τ_local.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let mut taus: Vec<f64> = Vec::new();
    let mut groups: Vec<(String, f64, f64)> = Vec::new();
    for r in &rows {
        let tau = r.f64("tau_local")?;
        if !taus.contains(&tau) {
            taus.push(tau);
        }
        let key = (r.str("scheme")?, r.f64("kappa")?, r.f64("p")?);
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let mut head = vec!["scheme, κ".to_string(), "p".into()];
    head.extend(taus.iter().enumerate().map(|(i, t)| {
        if i == 0 {
            format!("τ_local = {t}")
        } else {
            format!("{t}")
        }
    }));
    let mut table = Markdown::new(&head);
    let mut last_scheme = None;
    for (scheme, kappa, p) in &groups {
        let cells: Vec<_> = taus
            .iter()
            .map(|t| {
                rows.iter().find(|r| {
                    r.str("scheme").is_ok_and(|v| v == *scheme)
                        && r.f64("kappa").is_ok_and(|v| v == *kappa)
                        && r.f64("p").is_ok_and(|v| v == *p)
                        && r.f64("tau_local").is_ok_and(|v| v == *t)
                })
            })
            .collect();
        let first = cells.iter().flatten().next();
        let xi = match first {
            Some(r) => r.f64("xi")?,
            None => continue,
        };
        let label = if scheme == "ist" {
            format!("IST, κ = {}", kappa_label(*kappa))
        } else {
            format!(
                "Bernoulli ξ = {}, κ = {}",
                kappa_label(xi),
                kappa_label(*kappa)
            )
        };
        let shown = if last_scheme.as_ref() == Some(&label) {
            String::new()
        } else {
            label.clone()
        };
        last_scheme = Some(label);
        let p_cell = match (scheme.as_str(), *p as u64) {
            ("ist", 1) => "1 (plain GD)".to_string(),
            ("ist", n) => format!("{n} (ξ = 1/{n})"),
            _ => integer(*p),
        };
        let mut row = vec![shown, p_cell];
        for cell in cells {
            row.push(match cell {
                Some(r) => {
                    let (mean, sd) = r.pair("floor")?;
                    mean_sd(mean, sd, 3)
                }
                None => "–".into(),
            });
        }
        table.row(&row);
    }
    let mut tables = Tables::default();
    tables.block("floors", table.text());
    Ok(tables)
}
