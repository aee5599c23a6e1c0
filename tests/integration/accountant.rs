//! The privacy accountant against the reference implementation researchers use: Google's
//! `dp_accounting` (PyPI, installed by `.ci/run`), run as a subprocess on the same grid.

use std::process::Command;

use gaussmask_privacy::{dp_sgd_epsilon, pld_epsilon};

/// The Python that has `dp_accounting`: `GAUSSMASK_PYTHON` (what `.ci/run` sets), else
/// `python3`.
fn python() -> String {
    std::env::var("GAUSSMASK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// ε of dp_accounting's PLD accountant for each (q, σ, steps, δ), grid width `h`.
fn reference_epsilons(grid: &[(f64, f64, u64, f64)], h: f64) -> Vec<f64> {
    let cases: Vec<String> = grid
        .iter()
        .map(|(q, s, t, d)| format!("({q:e}, {s:e}, {t}, {d:e})"))
        .collect();
    let script = format!(
        "from dp_accounting import dp_event\n\
         from dp_accounting.pld import pld_privacy_accountant as p\n\
         for q, s, t, d in [{}]:\n\
         \x20   a = p.PLDAccountant(value_discretization_interval={h:e})\n\
         \x20   a.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(s)), t)\n\
         \x20   print(repr(a.get_epsilon(d)))\n",
        cases.join(", ")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (bash .ci/run installs dp-accounting)", python()));
    assert!(
        out.status.success(),
        "dp_accounting failed (bash .ci/run installs it and sets GAUSSMASK_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn pld_epsilon_equals_dp_accounting_and_never_exceeds_the_renyi_bound() {
    // Sampling rates, noise multipliers, step counts and δ as DP-SGD uses them, with
    // dp-baseline's own (q = 0.1, σ = 0.5, 800 steps) and a full-batch case.
    let grid = [
        (0.1, 0.5, 800, 1e-5),
        (0.1, 0.7, 20, 1e-5),
        (0.01, 1.0, 1000, 1e-5),
        (0.004, 1.1, 2000, 1e-6),
        (0.05, 2.0, 100, 1e-7),
        (0.2, 1.5, 1, 1e-5),
        (1.0, 1.0, 10, 1e-5),
        (0.001, 0.8, 500, 1e-5),
    ];
    let h = 1e-4;
    let reference = reference_epsilons(&grid, h);
    for (&(q, sigma, steps, delta), &want) in grid.iter().zip(&reference) {
        let got = pld_epsilon(q, sigma, steps, delta, h);
        // Both discretize pessimistically on the same grid; they differ in tail handling,
        // which moves ε by far less than a grid step per composed step.
        let tolerance = 1e-3 * want.max(1.0);
        assert!(
            (got - want).abs() <= tolerance,
            "q = {q}, σ = {sigma}, T = {steps}, δ = {delta}: ε = {got}, dp_accounting {want}"
        );
        let (renyi, _) = dp_sgd_epsilon(q, sigma, steps, delta);
        assert!(
            renyi >= got,
            "q = {q}, σ = {sigma}, T = {steps}, δ = {delta}: Rényi {renyi} < PLD {got}"
        );
    }
}
