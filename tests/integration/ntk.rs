//! NTK diagnostics (SPEC §4): H∞ in closed form against Monte Carlo, λ_min against an
//! independent dense eigen-solve, the finite-width Gram and the tracker.

use gaussmask_data::SyntheticConfig;
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_ntk::{Tracker, gram, h_infinity, h_infinity_monte_carlo, lambda_min};

fn unit_inputs(seed: u64, n: usize, d: usize) -> Vec<f64> {
    let mut data = SyntheticConfig::new(n, d);
    data.seed = seed;
    data.generate().x
}

#[test]
fn closed_form_h_infinity_equals_monte_carlo_within_5_se() {
    let (n, d) = (6, 4);
    let x = unit_inputs(1, n, d);
    let h = h_infinity(&x, d).expect("unit-norm inputs");
    let (mc, se) = h_infinity_monte_carlo(&x, d, 200_000, 3);
    for i in 0..n * n {
        assert!(
            (h[i] - mc[i]).abs() < 5.0 * se[i].max(1e-12),
            "entry {i}: closed form {} vs MC {} ± {}",
            h[i],
            mc[i],
            se[i]
        );
    }
    // The diagonal is exactly 1/2: x_iᵀx_i (π − 0) / (2π).
    for i in 0..n {
        assert!((h[i * n + i] - 0.5).abs() < 1e-15);
    }
}

#[test]
fn h_infinity_refuses_inputs_off_the_unit_sphere() {
    let mut x = unit_inputs(2, 3, 5);
    x[7] *= 1.5;
    let err = h_infinity(&x, 5).unwrap_err();
    assert!(err.contains("input 1"), "{err}");
}

/// Cyclic Jacobi rotations on a dense symmetric matrix: the eigenvalues, in f64, independently
/// of nalgebra.
fn jacobi_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

#[test]
fn lambda_min_equals_a_dense_jacobi_eigen_solve() {
    for (seed, n, d) in [(3, 8, 3), (4, 30, 10), (5, 60, 20)] {
        let x = unit_inputs(seed, n, d);
        let h = h_infinity(&x, d).unwrap();
        let ours = lambda_min(&h, n);
        let reference = jacobi_eigenvalues(h.clone(), n)
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        assert!(
            (ours - reference).abs() <= 1e-10 * reference.abs().max(1e-3),
            "n = {n}: λ_min {ours} vs Jacobi {reference}"
        );
        assert!(
            ours > 0.0,
            "H∞ of distinct unit inputs is positive definite"
        );
    }
}

#[test]
fn gram_of_wide_random_weights_approaches_h_infinity() {
    let (n, d, m) = (5, 4, 100_000);
    let x = unit_inputs(6, n, d);
    let mut w = vec![0.0; m * d];
    Stream::new(7, tag::INIT).fill_normal(&mut w);
    let h = h_infinity(&x, d).unwrap();
    let g = gram(&w, &x, d);
    // Each entry is a mean of m Bernoulli-weighted terms |x_iᵀx_j| ≤ 1: SE ≤ 0.5/√m.
    let tol = 5.0 * 0.5 / (m as f64).sqrt();
    for i in 0..n * n {
        assert!((g[i] - h[i]).abs() < tol, "entry {i}: {} vs {}", g[i], h[i]);
    }
}

#[test]
fn tracker_counts_movement_and_flips() {
    let (n, d, m) = (20, 3, 4);
    let x = unit_inputs(8, n, d);
    let mut w0 = vec![0.0; 2 * m * d];
    Stream::new(9, tag::INIT).fill_normal(&mut w0);
    let tracker = Tracker::new(x.clone(), d, m, &w0, true);
    let at_start = tracker.observe(0, &w0);
    assert_eq!(at_start.len(), 2);
    for row in &at_start {
        assert_eq!((row.relative_movement, row.flipped_fraction), (0.0, 0.0));
        assert!(row.lambda_min_gram.is_some());
    }
    // Replica 1: neuron 0 negated, so its activation flips on every input (none is exactly on
    // its boundary) and ‖W − W_0‖ = 2‖w_0‖.
    let mut w = w0.clone();
    let start = m * d;
    w[start..start + d].iter_mut().for_each(|v| *v = -*v);
    let rows = tracker.observe(5, &w);
    assert_eq!(
        (rows[0].relative_movement, rows[0].flipped_fraction),
        (0.0, 0.0)
    );
    let w0_1 = &w0[start..start + m * d];
    let norm_all = w0_1.iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm_row = w0_1[..d].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((rows[1].relative_movement - 2.0 * norm_row / norm_all).abs() < 1e-12);
    assert!((rows[1].flipped_fraction - 1.0 / m as f64).abs() < 1e-12);
    assert_eq!(rows[1].step, 5);
}
