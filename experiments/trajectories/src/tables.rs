//! The README's table, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, integer, mean_sd, sig};
use gaussmask_nn::kappa_label;

/// `kappas`: per κ, the final clean loss over seeds, the floor, its excess over κ = 0, the
/// step to the plateau and the initial rate.
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let summary = record.json("summary.json")?;
    let seeds = summary.f64("seeds")?;
    let mut table = Markdown::new(&[
        "κ".to_string(),
        format!("final clean loss (mean ± sd, {seeds} seeds)"),
        "floor (last 20%)".into(),
        "excess over κ = 0".into(),
        "step to plateau".into(),
        "initial rate".into(),
    ]);
    for k in summary.array("kappas")? {
        table.row(&[
            kappa_label(k.f64("kappa")?),
            mean_sd(k.f64("final_clean_mean")?, k.f64("final_clean_std")?, 4),
            sig(k.f64("floor")?, 4),
            sig(k.f64("excess_floor")?, 4),
            integer(k.f64("step_to_plateau")?),
            sig(k.f64("initial_rate")?, 4),
        ]);
    }
    let mut tables = Tables::default();
    tables.block("kappas", table.text());
    Ok(tables)
}
