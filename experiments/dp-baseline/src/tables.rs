//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig};
use gaussmask_images::epoch_columns;
use gaussmask_nn::kappa_label;

/// `defences`: per defence (DP-SGD at each σ, the mask at each κ) and training length, the
/// attack's AUC, the target's test accuracy and, for DP-SGD, ε.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("defences.csv")?;
    let all: Vec<usize> = (0..csv.rows.len()).collect();
    let (epochs, headings) = epoch_columns(&csv, &all)?;
    let mut head = vec!["defence".to_string()];
    head.extend(headings);
    let mut table = Markdown::new(&head);
    for (defence, rows) in csv.group_by("defence")? {
        for strength in csv.distinct(&rows, "strength")? {
            let mut cells = vec![match defence.as_str() {
                "dp-sgd" => format!("DP-SGD σ = {}", kappa_label(strength)),
                _ => format!("{defence} κ = {}", kappa_label(strength)),
            }];
            for &e in &epochs {
                cells.push(
                    match csv.find(&rows, &[("strength", strength), ("epochs", e)]) {
                        Some(r) => {
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
                    },
                );
            }
            table.row(&cells);
        }
    }
    let mut tables = Tables::default();
    tables.block("defences", table.text());
    Ok(tables)
}
