//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig};
use gaussmask_nn::kappa_label;

/// `lira`: per cell, online LiRA's AUC and TPR at 0.1% and 1% FPR (Wilson interval) for clean
/// and masked queries, beside the models' test accuracy, for DP-SGD ε, and ML-Leaks's AUC and
/// TPR at 1% FPR on the same targets (clean queries).
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let csv = record.csv("lira.csv")?;
    let mut table = Markdown::new(&[
        "defence",
        "test accuracy",
        "queries",
        "AUC",
        "TPR at 0.1% FPR",
        "TPR at 1% FPR",
        "offline TPR at 1%",
        "ML-Leaks AUC",
        "ML-Leaks TPR at 1%",
    ]);
    let rate = |r: usize, col: &str| -> Result<String, HarnessError> {
        Ok(format!(
            "{:.4} [{:.4}, {:.4}]",
            csv.f64(r, col)?,
            csv.f64(r, &format!("{col}_low"))?,
            csv.f64(r, &format!("{col}_high"))?
        ))
    };
    for (defence, rows) in csv.group_by("defence")? {
        for strength in csv.distinct(&rows, "strength")? {
            let cell: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&r| csv.f64(r, "strength").ok() == Some(strength))
                .collect();
            for query in ["clean", "masked"] {
                let pick = |variant: &str| {
                    cell.iter().copied().find(|&r| {
                        csv.str(r, "query").ok() == Some(query)
                            && csv.str(r, "variant").ok() == Some(variant)
                    })
                };
                let (Some(r), Some(off)) = (pick("online"), pick("offline")) else {
                    continue;
                };
                let ml_leaks = match pick("ml-leaks") {
                    Some(l) => [
                        format!("{:.3}", csv.f64(l, "auc")?),
                        format!("{:.4}", csv.f64(l, "tpr_1pct")?),
                    ],
                    None => ["—".into(), "—".into()],
                };
                let name = match defence.as_str() {
                    "dp-sgd" => match csv.str(r, "epsilon")? {
                        "" => format!("DP-SGD σ = {}", kappa_label(strength)),
                        _ => format!(
                            "DP-SGD σ = {} (ε {})",
                            kappa_label(strength),
                            sig(csv.f64(r, "epsilon")?, 3)
                        ),
                    },
                    _ => format!("mask κ = {}", kappa_label(strength)),
                };
                table.row(&[
                    name,
                    format!("{:.3}", csv.f64(r, "test_accuracy")?),
                    query.to_string(),
                    format!("{:.3}", csv.f64(r, "auc")?),
                    rate(r, "tpr_0_1pct")?,
                    rate(r, "tpr_1pct")?,
                    format!("{:.4}", csv.f64(off, "tpr_1pct")?),
                    ml_leaks[0].clone(),
                    ml_leaks[1].clone(),
                ]);
            }
        }
    }
    let mut tables = Tables::default();
    tables.block("lira", table.text());
    tables.block("matched", matched(record)?);
    Ok(tables)
}

/// `matched`: each DP-SGD cell beside the mask cell of closest test accuracy, LiRA's TPR at
/// 0.1% FPR against each (the attacker's stronger query), and their ratio.
fn matched(record: &Record) -> Result<String, HarnessError> {
    let summary = record.json("summary.json")?;
    let mut table = Markdown::new(&[
        "DP-SGD",
        "test accuracy",
        "TPR at 0.1% FPR",
        "mask",
        "test accuracy",
        "TPR at 0.1% FPR",
        "mask / DP-SGD",
    ]);
    let rate = |m: &gaussmask_harness::records::Json, key: &str| -> Result<String, HarnessError> {
        let r = m.get(key)?;
        Ok(format!(
            "{:.4} [{:.4}, {:.4}]",
            r.f64("value")?,
            r.f64("low")?,
            r.f64("high")?
        ))
    };
    for m in summary.array("matched")? {
        let epsilon = match m.f64("epsilon") {
            Ok(e) => format!(" (ε {})", sig(e, 3)),
            Err(_) => String::new(),
        };
        let (mask, dp) = (
            m.get("mask_tpr_at_0_1pct")?.f64("value")?,
            m.get("dp_tpr_at_0_1pct")?.f64("value")?,
        );
        let ratio = if dp > 0.0 {
            format!("{:.1}×", mask / dp)
        } else {
            "–".into()
        };
        table.row(&[
            format!("σ = {}{epsilon}", kappa_label(m.f64("sigma")?)),
            format!("{:.3}", m.f64("dp_accuracy")?),
            rate(&m, "dp_tpr_at_0_1pct")?,
            format!(
                "κ = {} ({} queries)",
                kappa_label(m.f64("kappa")?),
                m.str("mask_query")?
            ),
            format!("{:.3}", m.f64("mask_accuracy")?),
            rate(&m, "mask_tpr_at_0_1pct")?,
            ratio,
        ]);
    }
    Ok(table.text())
}
