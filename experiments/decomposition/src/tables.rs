//! The README's tables and claims, from a recorded run (`gaussmask records tables`).

use gaussmask_harness::HarnessError;
use gaussmask_harness::records::{Markdown, Record, Tables, sig, signed_percent};
use gaussmask_harness::stats::{binomial_cdf, ks_normal};
use gaussmask_nn::kappa_label;

/// `means` (per κ over the networks), `network0` (two cells with their standard errors) and
/// `agreement` (how the closed form (A) sits against Monte Carlo, as statistics).
pub(crate) fn tables(record: &Record) -> Result<Tables, HarnessError> {
    let mut tables = Tables::default();
    let mut means = Markdown::new(&[
        "κ",
        "MC masked loss",
        "exact (A)",
        "(A) in 95% MC interval",
        "proxy (B)",
        "½ΣV",
        "½ΣR",
        "(B − A)/A",
    ]);
    for s in record.json("summary.json")?.items()? {
        means.row(&[
            kappa_label(s.f64("kappa")?),
            sig(s.f64("mc_masked")?, 5),
            sig(s.f64("exact")?, 5),
            format!("{}/{}", s.f64("exact_in_interval")?, s.f64("networks")?),
            sig(s.f64("proxy")?, 5),
            sig(s.f64("variance")?, 4),
            sig(s.f64("regularizer")?, 4),
            signed_percent(s.f64("proxy_gap")?, 2),
        ]);
    }
    tables.block("means", means.text());

    let csv = record.csv("decomposition.csv")?;
    let mut z = Vec::with_capacity(csv.rows.len());
    let mut worst = (0.0_f64, String::new());
    let mut network0 = Vec::new();
    for row in 0..csv.rows.len() {
        let (kappa, mc, se, exact) = (
            csv.f64(row, "kappa")?,
            csv.f64(row, "mc_masked")?,
            csv.f64(row, "mc_masked_se")?,
            csv.f64(row, "exact")?,
        );
        let zi = (exact - mc) / se;
        if zi.abs() > worst.0.abs() {
            worst = (zi, kappa_label(kappa));
        }
        z.push(zi);
        if csv.f64(row, "seed")? == 0.0 && (kappa == 0.2 || kappa == 1.0) {
            let unit = if network0.is_empty() {
                " (one standard error)"
            } else {
                ""
            };
            network0.push(format!(
                "at κ = {}: MC {} ± {}{unit}, exact {}",
                kappa_label(kappa),
                sig(mc, 5),
                sig(se, 2),
                sig(exact, 5)
            ));
        }
    }
    tables.block("network0", format!("Network 0 {}.", network0.join("; ")));

    let n = z.len() as u64;
    let inside = z.iter().filter(|v| v.abs() <= 1.959_964).count() as u64;
    let (d, p) = ks_normal(&z)
        .ok_or_else(|| HarnessError::input(format!("record {}: no finite z-score", record.name)))?;
    let p_count = binomial_cdf(inside, n, 0.95);
    tables.block(
        "agreement",
        format!(
            "Over all {n} (network, κ) pairs, z = (exact − MC)/SE: the Kolmogorov–Smirnov \
             test of the {n} z-scores against N(0, 1) gives D = {}, p = {}; {inside} of {n} lie \
             inside the 95% interval |z| ≤ 1.96 (expected {}; P(≤ {inside}) = {} under \
             Binomial({n}, 0.95)); the largest is z = {} at κ = {}.",
            sig(d, 2),
            sig(p, 2),
            sig(0.95 * n as f64, 3),
            sig(p_count, 2),
            sig(worst.0, 3),
            worst.1
        ),
    );
    tables.claim(
        format!(
            "the z-scores of (A) against Monte Carlo are consistent with N(0, 1) \
             (Kolmogorov–Smirnov p = {} ≥ 0.01)",
            sig(p, 2)
        ),
        p >= 0.01,
    );
    tables.claim(
        format!(
            "the count inside the 95% interval is consistent with Binomial({n}, 0.95) \
             (P(≤ {inside}) = {} ≥ 0.01)",
            sig(p_count, 2)
        ),
        p_count >= 0.01,
    );
    Ok(tables)
}
