//! Scalar f64 reference implementations.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// Standard normal density φ(t).
pub fn norm_pdf(t: f64) -> f64 {
    (-0.5 * t * t).exp() / (2.0 * PI).sqrt()
}

/// Standard normal CDF Φ(t) = ½ erfc(−t/√2) (accurate in the lower tail, unlike ½(1 + erf)).
pub fn norm_cdf(t: f64) -> f64 {
    0.5 * libm::erfc(-t * FRAC_1_SQRT_2)
}

/// Exact smoothed ReLU σ̃(z, s) = E[ReLU(u)], u ~ N(z, s²): z Φ(z/s) + s φ(z/s).
///
/// Finite for every input; equals ReLU(z) at s = 0.
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
    fn norm_cdf_matches_reference_values() {
        // Φ(1) = 0.8413447460685429, Φ(−3) = 0.0013498980316300946 (tables of the normal CDF).
        assert!((norm_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((norm_cdf(-3.0) - 0.001_349_898_031_630_094_6).abs() < 1e-17);
    }
}
