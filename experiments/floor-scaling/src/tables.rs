//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{
    Json, Markdown, Record, Tables, distinct, find, first_seen, integer, sig,
};
use gaussmask_nn::kappa_label;

/// `exponents`: per (n, τ) and width m, the fitted κ-exponent of the excess floor with its
/// 95% interval (the trajectories cell in bold); `lambda0`: λ₀ of each dataset.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let summary = record.json("summary.json")?;
    let fits = summary.array("fits")?;
    let mut widths = distinct(&fits, "m")?;
    let mut rows = first_seen(fits.iter().map(|f| Ok((f.f64("n")?, f.f64("tau")?))))?;
    widths.sort_by(f64::total_cmp);
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut head = vec!["n".to_string(), "τ".into()];
    head.extend(widths.iter().map(|m| format!("m = {}", integer(*m))));
    let mut table = Markdown::new(&head);
    for &(n, tau) in &rows {
        let mut row = vec![integer(n), kappa_label(tau)];
        for &m in &widths {
            let fit = find(&fits, &[("m", m), ("n", n), ("tau", tau)], &[]);
            let text = match fit.map(|f| f.get("fit")).transpose()? {
                Some(fit) if !fit.value.is_null() => exponent(&fit)?,
                _ => "–".into(),
            };
            // The trajectories cell.
            let bold = (m, n, tau) == (100.0, 500.0, 1.0);
            row.push(if bold { format!("**{text}**") } else { text });
        }
        table.row(&row);
    }
    let lambda0: Vec<String> = summary
        .get("lambda0")?
        .items()?
        .iter()
        .map(|pair| match pair.value.as_array().map(Vec::as_slice) {
            Some([n, l]) => Ok(format!(
                "{} (n = {})",
                sig(l.as_f64().unwrap_or(f64::NAN), 3),
                n
            )),
            _ => Err(HarnessError::input(format!(
                "record {}: lambda0 holds (n, λ₀) pairs",
                record.name
            ))),
        })
        .collect::<Result<_, _>>()?;
    let mut tables = Tables::default();
    tables.block("exponents", table.text());
    tables.block("lambda0", format!("λ₀ = {}.", lambda0.join(", ")));
    Ok(tables)
}

/// `p [lo, hi]`, or `p` alone for a fit without residual degrees of freedom.
fn exponent(fit: &Json) -> Result<String, HarnessError> {
    let slope = fit.f64("slope")?;
    Ok(match fit.pair("ci95") {
        Ok((lo, hi)) => format!("{slope:.2} [{lo:.2}, {hi:.2}]"),
        Err(_) => format!("{slope:.2} [–]"),
    })
}
