//! The exact expected loss (A) at fixed weights, on the CPU in f64: samples in parallel, each
//! neuron pair once (the moments M_rq are symmetric) and the diagonal in its own closed form.
//! It is the fast way to evaluate E_c L for reporting and benchmarking; training on (A) goes
//! through [`crate::expected::ExactLoss`], which carries the gradient.

use rayon::prelude::*;

use crate::scalar::{norm_cdf, norm_pdf, relu_product_moment, smoothed_relu};

/// E_c L = ½ Σ_i (f̃_i − y_i)² + ½ Σ_i V_i of one network, in its two parts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExactLossValue {
    /// ½ Σ_i (f̃_i − y_i)².
    pub smoothed_sse: f64,
    /// ½ Σ_i V_i, V_i = Var_c f(W, x_i ⊙ c).
    pub variance: f64,
}

impl ExactLossValue {
    /// E_c L.
    pub fn total(&self) -> f64 {
        self.smoothed_sse + self.variance
    }
}

/// Evaluates the exact expected loss of f(W, x) = (1/√m) aᵀReLU(W x) under masks
/// c ~ N(1, κ²) per coordinate. The sum over samples runs in sample order whatever the thread
/// count, so the result does not depend on it.
///
/// # Shapes
/// - `w`: `[m, d]` row-major, `a`: `[m]`, `x`: `[n, d]` row-major, `y`: `[n]`
///
/// # Panics
/// If the lengths disagree: `w.len() ≠ m·d` or `x.len() ≠ n·d` with m = `a.len()`, n = `y.len()`.
pub fn exact_loss(w: &[f64], a: &[f64], x: &[f64], y: &[f64], kappa: f64) -> ExactLossValue {
    let (m, n) = (a.len(), y.len());
    assert!(
        m > 0 && w.len().is_multiple_of(m),
        "w has {} entries, not m·d for m = {m}",
        w.len()
    );
    let d = w.len() / m;
    assert_eq!(x.len(), n * d, "x must be [n, d] = [{n}, {d}]");
    let parts: Vec<(f64, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (f_tilde, v) = sample_parts(w, a, &x[i * d..(i + 1) * d], kappa);
            ((f_tilde - y[i]).powi(2), v)
        })
        .collect();
    let (sse, var) = parts
        .iter()
        .fold((0.0, 0.0), |(s, v), &(ps, pv)| (s + ps, v + pv));
    ExactLossValue {
        smoothed_sse: 0.5 * sse,
        variance: 0.5 * var,
    }
}

/// (f̃, V) of one sample `x` (`[d]`).
fn sample_parts(w: &[f64], a: &[f64], x: &[f64], kappa: f64) -> (f64, f64) {
    let (m, d) = (a.len(), x.len());
    // Row r of `v` is w_r ⊙ x: u_r = v_rᵀc has mean z_r = Σ_j v_rj and sd κ‖v_r‖.
    let v: Vec<f64> = w
        .chunks_exact(d)
        .flat_map(|wr| wr.iter().zip(x).map(|(p, q)| p * q))
        .collect();
    let rows = || v.chunks_exact(d);
    let z: Vec<f64> = rows().map(|vr| vr.iter().sum()).collect();
    let norm: Vec<f64> = rows()
        .map(|vr| vr.iter().map(|t| t * t).sum::<f64>().sqrt())
        .collect();
    let s: Vec<f64> = norm.iter().map(|nr| kappa * nr).collect();
    let mean: Vec<f64> = (0..m).map(|r| smoothed_relu(z[r], s[r])).collect();
    let f_tilde = a.iter().zip(&mean).map(|(ar, mr)| ar * mr).sum::<f64>() / (m as f64).sqrt();

    let mut var = 0.0;
    for r in 0..m {
        // M_rr = E[(u_r⁺)²] = (z² + s²)Φ(z/s) + zsφ(z/s), and z⁺² at s = 0.
        let second = if s[r] > 0.0 {
            let alpha = z[r] / s[r];
            (z[r] * z[r] + s[r] * s[r]) * norm_cdf(alpha) + z[r] * s[r] * norm_pdf(alpha)
        } else {
            z[r].max(0.0).powi(2)
        };
        var += a[r] * a[r] * (second - mean[r] * mean[r]);
        let vr = &v[r * d..(r + 1) * d];
        let mut off = 0.0;
        for q in r + 1..m {
            let rho = if norm[r] > 0.0 && norm[q] > 0.0 {
                let vq = &v[q * d..(q + 1) * d];
                vr.iter().zip(vq).map(|(p, t)| p * t).sum::<f64>() / (norm[r] * norm[q])
            } else {
                0.0
            };
            let moment = relu_product_moment(z[r], s[r], z[q], s[q], rho);
            off += a[q] * (moment - mean[r] * mean[q]);
        }
        var += 2.0 * a[r] * off;
    }
    (f_tilde, var / m as f64)
}
