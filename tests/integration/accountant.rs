//! The privacy accountant against the reference implementation researchers use: Google's
//! `dp_accounting` (PyPI, installed by `.ci/run`), run as a subprocess on the same grid.

use std::process::Command;

use gaussmask_privacy::rdp::orders;
use gaussmask_privacy::{dp_sgd_epsilon, dp_sgd_epsilon_over, pld_epsilon};

/// The Python that has `dp_accounting`: `GAUSSMASK_PYTHON` (what `.ci/run` sets), else
/// `python3`.
fn python() -> String {
    std::env::var("GAUSSMASK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// ε of dp_accounting's PLD accountant for each (q, σ, steps, δ), grid width `h`.
fn reference_epsilons(grid: &[(f64, f64, u64, f64)], h: f64) -> Vec<f64> {
    run_reference(
        grid,
        &format!(
            "from dp_accounting.pld import pld_privacy_accountant as p\n\
             def make(): return p.PLDAccountant(value_discretization_interval={h:e})\n"
        ),
    )
}

/// ε of dp_accounting's Rényi accountant for each (q, σ, steps, δ), over the orders `alphas`.
fn reference_renyi_epsilons(grid: &[(f64, f64, u64, f64)], alphas: &[f64]) -> Vec<f64> {
    let alphas: Vec<String> = alphas.iter().map(|a| format!("{a:e}")).collect();
    run_reference(
        grid,
        &format!(
            "from dp_accounting.rdp import rdp_privacy_accountant as r\n\
             def make(): return r.RdpAccountant([{}])\n",
            alphas.join(", ")
        ),
    )
}

/// Runs `make()` (defined by `setup`) of dp_accounting on every case of `grid`.
fn run_reference(grid: &[(f64, f64, u64, f64)], setup: &str) -> Vec<f64> {
    let cases: Vec<String> = grid
        .iter()
        .map(|(q, s, t, d)| format!("({q:e}, {s:e}, {t}, {d:e})"))
        .collect();
    let script = format!(
        "from dp_accounting import dp_event\n{setup}\
         for q, s, t, d in [{}]:\n\
         \x20   a = make()\n\
         \x20   a.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(s)), t)\n\
         \x20   print(repr(float(a.get_epsilon(d))))\n",
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

/// Sampling rates, noise multipliers, step counts and δ as DP-SGD uses them, with
/// dp-baseline's own (q = 0.1, σ = 0.5, 800 steps) and a full-batch case.
const GRID: [(f64, f64, u64, f64); 8] = [
    (0.1, 0.5, 800, 1e-5),
    (0.1, 0.7, 20, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.004, 1.1, 2000, 1e-6),
    (0.05, 2.0, 100, 1e-7),
    (0.2, 1.5, 1, 1e-5),
    (1.0, 1.0, 10, 1e-5),
    (0.001, 0.8, 500, 1e-5),
];

#[test]
fn pld_epsilon_equals_dp_accounting_and_never_exceeds_the_renyi_bound() {
    let grid = GRID;
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

#[test]
fn renyi_epsilon_equals_dp_accounting_at_integer_orders_and_is_tighter_with_fractional_ones() {
    // Integer orders: the same sum, the same conversion.
    let integers: Vec<f64> = (2..=256).map(f64::from).collect();
    let reference = reference_renyi_epsilons(&GRID, &integers);
    for (&(q, sigma, steps, delta), &want) in GRID.iter().zip(&reference) {
        let (got, _) = dp_sgd_epsilon_over(q, sigma, steps, delta, &integers);
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "q = {q}, σ = {sigma}, T = {steps}, δ = {delta}: ε = {got}, dp_accounting {want}"
        );
    }
    // Fractional orders too: dp_accounting sums the fractional series by absolute value, an
    // upper bound on the signed series summed here (itself checked against quadrature in
    // the crate), so ours may only be lower, and stays above the tight PLD ε.
    let all = orders();
    let reference = reference_renyi_epsilons(&GRID, &all);
    for (&(q, sigma, steps, delta), &want) in GRID.iter().zip(&reference) {
        let (got, _) = dp_sgd_epsilon(q, sigma, steps, delta);
        let tight = pld_epsilon(q, sigma, steps, delta, 1e-4);
        assert!(
            got <= want * (1.0 + 1e-9) && got >= tight,
            "q = {q}, σ = {sigma}, T = {steps}, δ = {delta}: ε = {got}, dp_accounting {want}, \
             PLD {tight}"
        );
    }
}
