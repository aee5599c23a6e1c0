//! Scalar f64 reference implementations.

pub use crate::normal::{norm_cdf, norm_pdf};

/// Exact smoothed ReLU σ̃(z, s) = E[ReLU(u)], u ~ N(z, s²): z Φ(z/s) + s φ(z/s).
///
/// Finite for every input; equals ReLU(z) at s = 0.
///
/// ```
/// use gaussmask_core::rng::Stream;
/// use gaussmask_smooth::smoothed_relu;
///
/// // E[ReLU(u)] for u ~ N(0.3, 0.8²), against 200 000 draws (within 5 standard errors).
/// let (z, s, n) = (0.3, 0.8, 200_000);
/// let mut stream = Stream::new(1, 0);
/// let draws: Vec<f64> = (0..n).map(|_| (z + s * stream.normal()).max(0.0)).collect();
/// let mean = draws.iter().sum::<f64>() / n as f64;
/// let sd = (draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
/// assert!((mean - smoothed_relu(z, s)).abs() < 5.0 * sd / (n as f64).sqrt());
/// assert_eq!(smoothed_relu(-1.0, 0.0), 0.0); // s = 0: the ReLU itself
/// ```
pub fn smoothed_relu(z: f64, s: f64) -> f64 {
    if s <= 0.0 {
        return z.max(0.0);
    }
    let a = z / s;
    z * norm_cdf(a) + s * norm_pdf(a)
}

/// The paper's proxy σ̂(z, s) = z Φ(z/s) (= s·GELU(z/s)); ReLU(z) at s = 0.
pub fn proxy_relu(z: f64, s: f64) -> f64 {
    if s <= 0.0 {
        return z.max(0.0);
    }
    z * norm_cdf(z / s)
}

/// M = E[u⁺ v⁺] for (u, v) bivariate normal with means (z_u, z_v), standard deviations
/// (s_u, s_v) and correlation ρ (SPEC §3(A)). With a = z_u/s_u, b = z_v/s_v, ρ̄ = √(1 − ρ²):
///
/// M = s_u s_v [ (ab + ρ) Φ₂(a, b; ρ) + a φ(b) Φ((a − ρb)/ρ̄) + b φ(a) Φ((b − ρa)/ρ̄)
///               + ρ̄ φ(a) φ((b − ρa)/ρ̄) ],
///
/// with the limits s → 0 (a deterministic factor) and |ρ| = 1 (perfectly (anti)correlated)
/// taken in closed form.
pub fn relu_product_moment(z_u: f64, s_u: f64, z_v: f64, s_v: f64, rho: f64) -> f64 {
    if s_u <= 0.0 {
        return z_u.max(0.0) * smoothed_relu(z_v, s_v);
    }
    if s_v <= 0.0 {
        return z_v.max(0.0) * smoothed_relu(z_u, s_u);
    }
    let (a, b) = (z_u / s_u, z_v / s_v);
    let rho = rho.clamp(-1.0, 1.0);
    let unit = if rho == 1.0 {
        // v-standardized = u-standardized: ∫_{−min(a,b)}^∞ (x + a)(x + b) φ(x) dx.
        let (lo, hi) = (a.min(b), a.max(b));
        (a * b + 1.0) * norm_cdf(lo) + hi * norm_pdf(lo)
    } else if rho == -1.0 {
        // Standardized v = −x: ∫_{−a}^{b} (x + a)(b − x) φ(x) dx, zero when the interval is empty.
        if a + b <= 0.0 {
            0.0
        } else {
            (a * b - 1.0) * (norm_cdf(a) + norm_cdf(b) - 1.0) + a * norm_pdf(b) + b * norm_pdf(a)
        }
    } else {
        let rb = ((1.0 - rho) * (1.0 + rho)).sqrt();
        let ta = (a - rho * b) / rb;
        let tb = (b - rho * a) / rb;
        (a * b + rho) * crate::bivariate::bivariate_norm_cdf(a, b, rho)
            + a * norm_pdf(b) * norm_cdf(ta)
            + b * norm_pdf(a) * norm_cdf(tb)
            + rb * norm_pdf(a) * norm_pdf(tb)
    };
    s_u * s_v * unit
}

/// One sample's exact decomposition E_c[(f(W, x ⊙ c) − y)²] = (f̃ − y)² + V (SPEC §3(A)) for one
/// network in row-major f64: `w` is `[m, d]`, `a` is `[m]`, `x` is `[d]`. Returns (f̃, V).
pub fn smoothed_output_and_variance(w: &[f64], a: &[f64], x: &[f64], kappa: f64) -> (f64, f64) {
    let m = a.len();
    let d = x.len();
    let v: Vec<Vec<f64>> = (0..m)
        .map(|r| (0..d).map(|j| w[r * d + j] * x[j]).collect())
        .collect();
    let z: Vec<f64> = v.iter().map(|vr| vr.iter().sum()).collect();
    let norm: Vec<f64> = v
        .iter()
        .map(|vr| vr.iter().map(|t| t * t).sum::<f64>().sqrt())
        .collect();
    let s: Vec<f64> = norm.iter().map(|nr| kappa * nr).collect();
    let mean: Vec<f64> = (0..m).map(|r| smoothed_relu(z[r], s[r])).collect();
    let f_tilde = (0..m).map(|r| a[r] * mean[r]).sum::<f64>() / (m as f64).sqrt();
    let mut var = 0.0;
    for r in 0..m {
        for q in 0..m {
            let rho = if norm[r] > 0.0 && norm[q] > 0.0 {
                v[r].iter().zip(&v[q]).map(|(p, t)| p * t).sum::<f64>() / (norm[r] * norm[q])
            } else {
                0.0
            };
            let moment = relu_product_moment(z[r], s[r], z[q], s[q], rho);
            var += a[r] * a[q] * (moment - mean[r] * mean[q]);
        }
    }
    (f_tilde, var / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landmarks_of_spec_section_2() {
        // σ̃(0, s) = s φ(0) = s / √(2π) = 0.398942… s.
        for s in [0.1, 0.2, 1.0, 3.0] {
            assert!((smoothed_relu(0.0, s) - 0.398_942_280_401_432_7 * s).abs() < 1e-12);
        }
        // σ̂(·, s) has its minimum −0.16997 s at z = −0.75179 s: check the value and that the
        // derivative Φ(a) + a φ(a) vanishes there (a = z/s).
        let a: f64 = -0.751_791_524_693_564_5;
        assert!((norm_cdf(a) + a * norm_pdf(a)).abs() < 1e-9);
        assert!((proxy_relu(a * 2.0, 2.0) / 2.0 - (-0.169_971_085_6)).abs() < 1e-6);
    }

    #[test]
    fn limits_are_finite_and_match_relu() {
        assert_eq!(smoothed_relu(0.0, 0.0), 0.0);
        assert_eq!(smoothed_relu(1.5, 0.0), 1.5);
        assert_eq!(proxy_relu(-1.5, 0.0), 0.0);
        for (z, s) in [
            (1e3, 1e-300),
            (-1e3, 1e-300),
            (1e300, 1.0),
            (-1e300, 1.0),
            (5.0, 1e-3),
        ] {
            let e = smoothed_relu(z, s);
            let p = proxy_relu(z, s);
            assert!(e.is_finite() && p.is_finite(), "z={z} s={s}");
            assert!((e - z.max(0.0)).abs() <= 1e-9 * z.abs().max(1.0));
        }
    }

    #[test]
    fn relu_product_moment_diagonal_and_limits() {
        // ρ = 1 and equal arguments: the second moment (z² + s²)Φ(α) + zsφ(α) of SPEC §3(A).
        for (z, s) in [(0.3, 0.5), (-0.7, 0.2), (1.5, 2.0)] {
            let a = z / s;
            let want = (z * z + s * s) * norm_cdf(a) + z * s * norm_pdf(a);
            assert!((relu_product_moment(z, s, z, s, 1.0) - want).abs() < 1e-14);
        }
        // Continuity at |ρ| → 1 and s → 0.
        let (zu, su, zv, sv) = (0.4, 0.6, -0.1, 0.9);
        for rho in [1.0, -1.0] {
            let near = relu_product_moment(zu, su, zv, sv, rho * (1.0 - 1e-9));
            assert!(
                (near - relu_product_moment(zu, su, zv, sv, rho)).abs() < 1e-4,
                "ρ = {rho}"
            );
        }
        let tiny = relu_product_moment(zu, 1e-9, zv, sv, 0.3);
        assert!((tiny - relu_product_moment(zu, 0.0, zv, sv, 0.3)).abs() < 1e-7);
        // Independence: E[u⁺]E[v⁺].
        let indep = smoothed_relu(zu, su) * smoothed_relu(zv, sv);
        assert!((relu_product_moment(zu, su, zv, sv, 0.0) - indep).abs() < 1e-14);
    }

    #[test]
    fn relu_product_moment_matches_monte_carlo() {
        // 10⁶ correlated pairs; the estimate's standard error is measured from the draws.
        let (zu, su, zv, sv, rho) = (0.2, 0.7, -0.3, 1.1, 0.6);
        let mut rng = gaussmask_core::rng::Stream::new(17, gaussmask_core::rng::tag::MASK);
        let n = 1_000_000;
        let (mut sum, mut sum2) = (0.0, 0.0);
        for _ in 0..n {
            let (x, y) = (rng.normal(), rng.normal());
            let u = zu + su * x;
            let v = zv + sv * (rho * x + (1.0 - rho * rho).sqrt() * y);
            let p = u.max(0.0) * v.max(0.0);
            sum += p;
            sum2 += p * p;
        }
        let mean = sum / n as f64;
        let se = ((sum2 / n as f64 - mean * mean) / n as f64).sqrt();
        let exact = relu_product_moment(zu, su, zv, sv, rho);
        assert!(
            (exact - mean).abs() < 5.0 * se,
            "exact {exact}, MC {mean} ± {se}"
        );
    }

    #[test]
    fn norm_cdf_matches_reference_values() {
        // Φ(1) = 0.8413447460685429, Φ(−3) = 0.0013498980316300946 (tables of the normal CDF).
        assert!((norm_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((norm_cdf(-3.0) - 0.001_349_898_031_630_094_6).abs() < 1e-17);
    }
}
