//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig};
use gaussmask_nn::kappa_label;

/// `defences`: per defence (DP-SGD at each σ, the mask at each κ) and training length, the
/// attack's AUC, the target's test accuracy and, for DP-SGD, ε.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("defences.csv")?;
    let mut epochs: Vec<f64> = Vec::new();
    for row in 0..csv.rows.len() {
        let e = csv.f64(row, "epochs")?;
        if !epochs.contains(&e) {
            epochs.push(e);
        }
    }
    let mut head = vec!["defence".to_string()];
    head.extend(epochs.iter().enumerate().map(|(i, e)| {
        if i == 0 {
            format!("{e} epochs")
        } else {
            format!("{e}")
        }
    }));
    let mut table = Markdown::new(&head);
    for (defence, rows) in csv.group_by("defence")? {
        let mut strengths: Vec<(String, Vec<usize>)> = Vec::new();
        for &row in &rows {
            let s = csv.str(row, "strength")?.to_string();
            match strengths.iter_mut().find(|(k, _)| *k == s) {
                Some((_, r)) => r.push(row),
                None => strengths.push((s, vec![row])),
            }
        }
        for (_, rows) in strengths {
            let value: f64 = csv.f64(rows[0], "strength")?;
            let mut cells = vec![match defence.as_str() {
                "dp-sgd" => format!("DP-SGD σ = {}", kappa_label(value)),
                _ => format!("{defence} κ = {}", kappa_label(value)),
            }];
            for &e in &epochs {
                let row = rows
                    .iter()
                    .find(|&&r| csv.f64(r, "epochs").is_ok_and(|v| v == e));
                cells.push(match row {
                    Some(&r) => {
                        let epsilon = match csv.str(r, "epsilon")? {
                            "" => String::new(),
                            _ => format!(", ε {}", sig(csv.f64(r, "epsilon")?, 3)),
                        };
                        format!(
                            "{:.3} / {:.3}{epsilon}",
                            csv.f64(r, "auc")?,
                            csv.f64(r, "target_test_accuracy")?
                        )
                    }
                    None => "–".into(),
                });
            }
            table.row(&cells);
        }
    }
    let mut tables = Tables::default();
    tables.block("defences", table.text());
    Ok(tables)
}
