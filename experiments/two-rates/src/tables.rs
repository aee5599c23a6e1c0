//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, distinct, find, integer, sig};
use gaussmask_nn::kappa_label;

/// `ratios`: per (κ, m), final over initial clean loss at each ρ, and how far W and a moved
/// at the largest ρ.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let rhos = distinct(&rows, "rho")?;
    let top = rhos.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut head = vec!["m".to_string(), "κ".into()];
    head.extend(rhos.iter().map(|r| format!("ρ = {}", kappa_label(*r))));
    head.push(format!("movement W, a at ρ = {}", kappa_label(top)));
    let mut table = Markdown::new(&head);
    let mut diverged = 0;
    for kappa in distinct(&rows, "kappa")? {
        for m in distinct(&rows, "m")? {
            let at = |rho: f64| find(&rows, &[("m", m), ("kappa", kappa), ("rho", rho)], &[]);
            let mut cells = vec![integer(m), kappa_label(kappa)];
            for &rho in &rhos {
                cells.push(match at(rho) {
                    Some(r) if r.value["diverged"].is_null() => sig(r.f64("loss_ratio")?, 2),
                    Some(_) => {
                        diverged += 1;
                        "diverged".into()
                    }
                    None => "–".into(),
                });
            }
            cells.push(match at(top) {
                Some(r) => format!(
                    "{}, {}",
                    sig(r.f64("movement_w")?, 2),
                    sig(r.f64("movement_a")?, 3)
                ),
                None => "–".into(),
            });
            table.row(&cells);
        }
    }
    let mut tables = Tables::default();
    tables.block("ratios", table.text());
    tables.claim("no run diverged", diverged == 0);
    Ok(tables)
}
