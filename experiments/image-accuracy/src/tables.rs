//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, distinct, find, first_seen, mean_sd};
use gaussmask_nn::kappa_label;

/// `accuracy`: per κ, the clean test accuracy (mean ± sd over seeds) of every (dataset,
/// model).
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let rows = record.json("summary.json")?.array("rows")?;
    let columns = first_seen(
        rows.iter()
            .map(|r| Ok((r.str("dataset")?, r.str("model")?))),
    )?;
    let mut head = vec!["κ".to_string()];
    head.extend(
        columns
            .iter()
            .map(|(d, m)| format!("{} {m}", dataset_name(d))),
    );
    let mut table = Markdown::new(&head);
    for k in distinct(&rows, "kappa")? {
        let mut row = vec![kappa_label(k)];
        for (d, m) in &columns {
            row.push(
                match find(&rows, &[("kappa", k)], &[("dataset", d), ("model", m)]) {
                    Some(r) => mean_sd(r.f64("accuracy")?, r.f64("accuracy_std")?, 4),
                    None => "–".into(),
                },
            );
        }
        table.row(&row);
    }
    let mut tables = Tables::default();
    tables.block("accuracy", table.text());
    Ok(tables)
}

/// A dataset's name as papers write it.
fn dataset_name(id: &str) -> String {
    match id {
        "fashion-mnist" => "Fashion-MNIST".into(),
        "mnist" => "MNIST".into(),
        "cifar10" | "cifar-10" => "CIFAR-10".into(),
        other => other.to_string(),
    }
}
