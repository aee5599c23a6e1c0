//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{
    Markdown, Record, Tables, distinct, distinct_text, find, first_seen, integer, mean_sd,
    series_headings,
};
use gaussmask_nn::kappa_label;

/// `floors`: per scheme, κ and number of subnetworks p, the floor (mean ± sd over seeds) at
/// each number of local steps τ_local.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let taus = distinct(&rows, "tau_local")?;
    let labels: Vec<String> = taus.iter().map(|t| t.to_string()).collect();
    let mut head = vec!["scheme, κ".to_string(), "p".into()];
    head.extend(series_headings(
        &labels,
        |t| format!("τ_local = {t}"),
        str::to_string,
    ));
    let schemes = distinct_text(&rows, "scheme")?;
    let mut groups = first_seen(
        rows.iter()
            .map(|r| Ok((r.str("scheme")?, r.f64("kappa")?, r.f64("p")?))),
    )?;
    // One block of rows per (scheme, κ), p within it.
    groups.sort_by(|a, b| {
        let rank = |s: &String| schemes.iter().position(|x| x == s);
        rank(&a.0)
            .cmp(&rank(&b.0))
            .then(a.1.total_cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
    });
    let mut table = Markdown::new(&head);
    let mut last_label = String::new();
    for (scheme, kappa, p) in &groups {
        let cells: Vec<_> = taus
            .iter()
            .map(|&t| {
                find(
                    &rows,
                    &[("kappa", *kappa), ("p", *p), ("tau_local", t)],
                    &[("scheme", scheme)],
                )
            })
            .collect();
        let Some(first) = cells.iter().flatten().next() else {
            continue;
        };
        let label = match scheme.as_str() {
            "ist" => format!("IST, κ = {}", kappa_label(*kappa)),
            _ => format!(
                "Bernoulli ξ = {}, κ = {}",
                kappa_label(first.f64("xi")?),
                kappa_label(*kappa)
            ),
        };
        // The scheme and κ once per group of rows.
        let shown = if label == last_label {
            String::new()
        } else {
            label.clone()
        };
        last_label = label;
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
