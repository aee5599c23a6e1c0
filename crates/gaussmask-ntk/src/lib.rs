//! NTK quantities of SPEC §4, on the host in f64.
//!
//! - [`h_infinity`]: H∞_ij = x_iᵀx_j (π − arccos x_iᵀx_j) / (2π) for unit-norm inputs, and
//!   [`h_infinity_monte_carlo`], E_w[x_iᵀx_j 1{wᵀx_i ≥ 0, wᵀx_j ≥ 0}] over w ~ N(0, I), for any
//!   inputs.
//! - [`gram`]: the finite-width Gram H(k) of weights W_k.
//! - [`lambda_min`]: the smallest eigenvalue of a symmetric matrix (λ₀ = λ_min(H∞)), by a
//!   dense symmetric eigen-solve (nalgebra).
//! - [`Tracker`]: ‖W_k − W_0‖_F / ‖W_0‖_F, the fraction of flipped activation patterns and
//!   λ_min(H(k)) along a training run, per replica.
//!
//! Matrices are row-major `Vec<f64>`; `x` is `[n, d]`, `w` is `[m, d]`.

use gaussmask_core::InputError;
use std::f64::consts::PI;

use gaussmask_core::rng::{Stream, tag};
use serde::Serialize;

/// Inputs whose norm is off 1 by more than this are refused by [`h_infinity`].
pub const UNIT_NORM_TOLERANCE: f64 = 1e-6;

/// H∞ for unit-norm inputs, `[n, n]`.
///
/// # Shapes
/// `x`: `[n, d]` row-major
///
/// # Errors
/// If some row of `x` is not unit-norm (the closed form holds only there; use
/// [`h_infinity_monte_carlo`]).
pub fn h_infinity(x: &[f64], d: usize) -> Result<Vec<f64>, InputError> {
    let n = rows(x, d);
    for (i, xi) in x.chunks_exact(d).enumerate() {
        let norm = dot(xi, xi).sqrt();
        if (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
            return Err(format!(
                "input {i} has norm {norm:.6}: the closed-form H∞ needs unit-norm inputs \
                 (use the Monte-Carlo H∞)"
            )
            .into());
        }
    }
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let c = dot(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).clamp(-1.0, 1.0);
            let v = c * (PI - c.acos()) / (2.0 * PI);
            h[i * n + j] = v;
            h[j * n + i] = v;
        }
    }
    Ok(h)
}

/// Monte-Carlo H∞ over `samples` draws of w ~ N(0, I_d): the mean and its standard error,
/// both `[n, n]`.
///
/// # Shapes
/// `x`: `[n, d]` row-major
pub fn h_infinity_monte_carlo(
    x: &[f64],
    d: usize,
    samples: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let n = rows(x, d);
    let mut stream = Stream::new(seed, tag::INIT);
    let (mut sum, mut sum2) = (vec![0.0; n * n], vec![0.0; n * n]);
    let mut w = vec![0.0; d];
    let mut active = vec![false; n];
    for _ in 0..samples {
        stream.fill_normal(&mut w);
        for (i, xi) in x.chunks_exact(d).enumerate() {
            active[i] = dot(&w, xi) >= 0.0;
        }
        for i in 0..n {
            if !active[i] {
                continue;
            }
            for j in 0..n {
                if active[j] {
                    let v = dot(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
                    sum[i * n + j] += v;
                    sum2[i * n + j] += v * v;
                }
            }
        }
    }
    let k = samples as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / k).collect();
    let se = sum2
        .iter()
        .zip(&mean)
        .map(|(s2, mu)| ((s2 / k - mu * mu).max(0.0) / (k - 1.0)).sqrt())
        .collect();
    (mean, se)
}

/// The finite-width Gram H_ij = (1/m) Σ_r x_iᵀx_j 1{w_rᵀx_i ≥ 0, w_rᵀx_j ≥ 0}, `[n, n]`.
///
/// # Shapes
/// `w`: `[m, d]`, `x`: `[n, d]`, both row-major
pub fn gram(w: &[f64], x: &[f64], d: usize) -> Vec<f64> {
    let (n, m) = (rows(x, d), rows(w, d));
    let pattern = patterns(w, x, d);
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let both = (0..m)
                .filter(|&r| pattern[i * m + r] && pattern[j * m + r])
                .count();
            let v = dot(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]) * both as f64 / m as f64;
            h[i * n + j] = v;
            h[j * n + i] = v;
        }
    }
    h
}

/// λ_min of a symmetric `[n, n]` matrix (only its lower triangle is read).
pub fn lambda_min(sym: &[f64], n: usize) -> f64 {
    assert_eq!(sym.len(), n * n, "matrix must be [n, n] for n = {n}");
    if n == 0 {
        return f64::NAN;
    }
    let matrix = nalgebra::DMatrix::from_row_slice(n, n, sym);
    matrix.symmetric_eigenvalues().min()
}

/// The activation pattern 1{w_rᵀx_i ≥ 0}, `[n, m]`.
fn patterns(w: &[f64], x: &[f64], d: usize) -> Vec<bool> {
    x.chunks_exact(d)
        .flat_map(|xi| w.chunks_exact(d).map(move |wr| dot(wr, xi) >= 0.0))
        .collect()
}

fn rows(t: &[f64], d: usize) -> usize {
    assert!(
        d > 0 && t.len().is_multiple_of(d),
        "length {} is not a multiple of d = {d}",
        t.len()
    );
    t.len() / d
}

fn dot(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a * b).sum()
}

/// One row of diagnostics for one replica at one step.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Diagnostics {
    /// Step k.
    pub step: usize,
    /// Replica index within the run.
    pub replica: usize,
    /// ‖W_k − W_0‖_F / ‖W_0‖_F.
    pub relative_movement: f64,
    /// Fraction of (sample, neuron) pairs whose activation 1{w_rᵀx_i ≥ 0} differs from step 0.
    pub flipped_fraction: f64,
    /// λ_min(H(k)), when asked for (it costs an n×n eigen-solve).
    pub lambda_min_gram: Option<f64>,
}

/// Follows W_k of every replica of a run against its W_0.
///
/// # Shapes
/// Weights are `[R, m, d]` row-major (replica-major), as the trainer logs them.
pub struct Tracker {
    x: Vec<f64>,
    d: usize,
    m: usize,
    initial: Vec<Vec<f64>>,
    initial_patterns: Vec<Vec<bool>>,
    with_gram: bool,
}

impl Tracker {
    /// Starts from the initial weights `w0` (`[R, m, d]`) on inputs `x` (`[n, d]`).
    /// `with_gram` adds λ_min(H(k)) to each row.
    pub fn new(x: Vec<f64>, d: usize, m: usize, w0: &[f64], with_gram: bool) -> Self {
        let initial: Vec<Vec<f64>> = w0.chunks_exact(m * d).map(<[f64]>::to_vec).collect();
        let initial_patterns = initial.iter().map(|w| patterns(w, &x, d)).collect();
        Self {
            x,
            d,
            m,
            initial,
            initial_patterns,
            with_gram,
        }
    }

    /// Diagnostics of every replica at `step` with weights `w` (`[R, m, d]`).
    pub fn observe(&self, step: usize, w: &[f64]) -> Vec<Diagnostics> {
        w.chunks_exact(self.m * self.d)
            .zip(self.initial.iter().zip(&self.initial_patterns))
            .enumerate()
            .map(|(replica, (wk, (w0, p0)))| {
                let moved: f64 = wk.iter().zip(w0).map(|(a, b)| (a - b) * (a - b)).sum();
                let p = patterns(wk, &self.x, self.d);
                let flipped = p.iter().zip(p0).filter(|(a, b)| a != b).count();
                let lambda_min_gram = self.with_gram.then(|| {
                    let n = self.x.len() / self.d;
                    lambda_min(&gram(wk, &self.x, self.d), n)
                });
                Diagnostics {
                    step,
                    replica,
                    relative_movement: (moved / dot(w0, w0)).sqrt(),
                    flipped_fraction: flipped as f64 / p.len() as f64,
                    lambda_min_gram,
                }
            })
            .collect()
    }
}
