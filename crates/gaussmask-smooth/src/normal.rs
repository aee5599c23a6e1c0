//! The standard normal density and CDF, the one-dimensional building blocks of every closed
//! form here.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// Standard normal density φ(t).
pub fn norm_pdf(t: f64) -> f64 {
    (-0.5 * t * t).exp() / (2.0 * PI).sqrt()
}

/// Standard normal CDF Φ(t) = ½ erfc(−t/√2) (accurate in the lower tail, unlike ½(1 + erf)).
pub fn norm_cdf(t: f64) -> f64 {
    0.5 * libm::erfc(-t * FRAC_1_SQRT_2)
}
