//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig};
use gaussmask_harness::stats::max_abs_normal_tail;

/// `errors`: the largest deviation of the exact σ̃ and of the proxy σ̂ from Monte Carlo, in
/// absolute terms and in standard errors.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let s = record.json("summary.json")?;
    let mut table = Markdown::new(&[
        String::new(),
        "max abs error vs MC".into(),
        format!(
            "max error in standard errors ({} points)",
            s.f64("points_in_se")?
        ),
    ]);
    for (name, key) in [("exact σ̃", "exact"), ("proxy σ̂", "proxy")] {
        table.row(&[
            name.to_string(),
            sig(s.f64(&format!("max_abs_error_{key}"))?, 3),
            sig(s.f64(&format!("max_error_in_se_{key}"))?, 3),
        ]);
    }
    // Every point's error, in standard errors, is a draw of N(0, 1) where the closed form is
    // exact: the largest of n such draws is judged by how often n draws reach it.
    let n = s.f64("points_in_se")? as u64;
    let (exact, proxy) = (
        s.f64("max_error_in_se_exact")?,
        s.f64("max_error_in_se_proxy")?,
    );
    let (p_exact, p_proxy) = (max_abs_normal_tail(exact, n), max_abs_normal_tail(proxy, n));
    let mut tables = Tables::default();
    tables.block("errors", table.text());
    tables.block(
        "agreement",
        format!(
            "The exact form's largest deviation over {n} points is {} standard errors: {n} \
             independent Gaussian errors reach that with probability {} (the proxy's {} \
             standard errors: {}).",
            sig(exact, 3),
            sig(p_exact, 2),
            sig(proxy, 3),
            sig(p_proxy, 2)
        ),
    );
    tables.claim(
        format!(
            "σ̃ agrees with Monte Carlo: P(max of {n} |N(0, 1)| ≥ {}) = {} ≥ 0.01",
            sig(exact, 3),
            sig(p_exact, 2)
        ),
        p_exact >= 0.01,
    );
    tables.claim(
        format!(
            "σ̂ departs from Monte Carlo: P(max of {n} |N(0, 1)| ≥ {}) = {} < 1e-6",
            sig(proxy, 3),
            sig(p_proxy, 2)
        ),
        p_proxy < 1e-6,
    );
    Ok(tables)
}
