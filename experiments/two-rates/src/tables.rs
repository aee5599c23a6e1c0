//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, integer, sig};
use gaussmask_nn::kappa_label;

/// `ratios`: per (κ, m), final over initial clean loss at each ρ, and how far W and a moved
/// at the largest ρ.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let mut kappas: Vec<f64> = Vec::new();
    let mut widths: Vec<f64> = Vec::new();
    let mut rhos: Vec<f64> = Vec::new();
    for r in &rows {
        for (list, key) in [
            (&mut kappas, "kappa"),
            (&mut widths, "m"),
            (&mut rhos, "rho"),
        ] {
            let v = r.f64(key)?;
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    let top = rhos.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut head = vec!["m".to_string(), "κ".into()];
    head.extend(rhos.iter().map(|r| format!("ρ = {}", kappa_label(*r))));
    head.push(format!("movement W, a at ρ = {}", kappa_label(top)));
    let mut table = Markdown::new(&head);
    let find = |m: f64, kappa: f64, rho: f64| {
        rows.iter().find(|r| {
            r.f64("m").is_ok_and(|v| v == m)
                && r.f64("kappa").is_ok_and(|v| v == kappa)
                && r.f64("rho").is_ok_and(|v| v == rho)
        })
    };
    let mut diverged = 0;
    for &kappa in &kappas {
        for &m in &widths {
            let mut cells = vec![integer(m), kappa_label(kappa)];
            for &rho in &rhos {
                cells.push(match find(m, kappa, rho) {
                    Some(r) if r.value["diverged"].is_null() => sig(r.f64("loss_ratio")?, 2),
                    Some(_) => {
                        diverged += 1;
                        "diverged".into()
                    }
                    None => "–".into(),
                });
            }
            cells.push(match find(m, kappa, top) {
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
