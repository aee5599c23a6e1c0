//! Small statistics shared by the experiments' summaries.

use serde::{Deserialize, Serialize};

/// A least-squares line y = intercept + slope·x with a 95% confidence interval of the slope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineFit {
    /// Slope.
    pub slope: f64,
    /// Intercept.
    pub intercept: f64,
    /// 95% confidence interval of the slope: slope ± t(0.975, k − 2)·SE (none for k = 2: no
    /// residual degree of freedom).
    pub ci95: Option<(f64, f64)>,
    /// Points fitted.
    pub points: usize,
}

impl LineFit {
    /// The slope's interval as text, `[lo, hi]` to 3 decimals, or `[-]` without one.
    pub fn ci95_text(&self) -> String {
        match self.ci95 {
            Some((lo, hi)) => format!("[{lo:.3}, {hi:.3}]"),
            None => "[-]".into(),
        }
    }
}

/// Student-t 0.975 quantiles for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Ordinary least squares of `y` on `x`; None with fewer than two distinct x.
pub fn fit_line(x: &[f64], y: &[f64]) -> Option<LineFit> {
    let k = x.len();
    if k < 2 || y.len() != k {
        return None;
    }
    let (mx, my) = (
        x.iter().sum::<f64>() / k as f64,
        y.iter().sum::<f64>() / k as f64,
    );
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ci95 = if k > 2 {
        let rss: f64 = x
            .iter()
            .zip(y)
            .map(|(a, b)| (b - intercept - slope * a).powi(2))
            .sum();
        let se = (rss / (k - 2) as f64 / sxx).sqrt();
        let t = T975.get(k - 3).copied().unwrap_or(1.96);
        Some((slope - t * se, slope + t * se))
    } else {
        None
    };
    Some(LineFit {
        slope,
        intercept,
        ci95,
        points: k,
    })
}

/// Checks that a κ grid holds the clean level κ = 0, which [`excess_exponent`] measures the
/// excess from.
///
/// # Errors
/// A message naming the config field `kappas`.
pub fn require_clean_kappa(kappas: &[f64]) -> Result<(), String> {
    crate::config::require(
        kappas.contains(&0.0),
        "kappas",
        "a list containing 0 (the clean floor)",
        format!("{kappas:?}"),
    )
}

/// The κ-exponent of an excess floor: the clean floor (at κ = 0) and the fit of
/// log(floor(κ) − floor(0)) on log κ over the κ > 0 whose excess is positive (None with fewer
/// than two). `floors` are (κ, floor) pairs.
///
/// # Errors
/// κ = 0 is not among them, as [`require_clean_kappa`] says.
pub fn excess_exponent(floors: &[(f64, f64)]) -> Result<(f64, Option<LineFit>), String> {
    let kappas: Vec<f64> = floors.iter().map(|(k, _)| *k).collect();
    require_clean_kappa(&kappas)?;
    let clean = floors
        .iter()
        .find(|(k, _)| *k == 0.0)
        .map_or(f64::NAN, |(_, f)| *f);
    let (x, y): (Vec<f64>, Vec<f64>) = floors
        .iter()
        .filter(|(k, f)| *k > 0.0 && *f > clean)
        .map(|(k, f)| (k.ln(), (f - clean).ln()))
        .unzip();
    Ok((clean, fit_line(&x, &y)))
}

/// Φ(z), the standard normal CDF.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// Q(λ) = P(K > λ) for Kolmogorov's limiting distribution: 2 Σ_{j≥1} (−1)^{j−1} e^{−2j²λ²}.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        // The alternating series converges slowly here, and Q(0.2) = 1 − 6e−22.
        return 1.0;
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let term = (-2.0 * (j * j) as f64 * lambda * lambda).exp();
        sum += if j % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The Kolmogorov–Smirnov test of `sample` against N(0, 1): the statistic D = sup |F_n − Φ|
/// and its p-value, from Kolmogorov's distribution at (√n + 0.12 + 0.11/√n)·D (Stephens'
/// small-sample form; within 0.01 of the exact p-value from n = 5 on). `None` for an empty
/// sample or a non-finite value.
pub fn ks_normal(sample: &[f64]) -> Option<(f64, f64)> {
    if sample.is_empty() || sample.iter().any(|z| !z.is_finite()) {
        return None;
    }
    let mut z = sample.to_vec();
    z.sort_by(f64::total_cmp);
    let n = z.len() as f64;
    let d = z
        .iter()
        .enumerate()
        .map(|(i, &zi)| {
            let f = normal_cdf(zi);
            ((i + 1) as f64 / n - f).max(f - i as f64 / n)
        })
        .fold(0.0, f64::max);
    let root = n.sqrt();
    Some((d, kolmogorov_q((root + 0.12 + 0.11 / root) * d)))
}

/// P(max |Z_i| ≥ z) for `n` independent standard normals: how often the largest of `n`
/// Gaussian errors, in standard errors, is at least `z`.
pub fn max_abs_normal_tail(z: f64, n: u64) -> f64 {
    let one = 2.0 * normal_cdf(-z.abs());
    // 1 − (1 − one)^n without cancellation for small `one`.
    -f64::exp_m1(n as f64 * (-one).ln_1p())
}

/// P(X ≤ k) for X ~ Binomial(n, p).
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    // pmf(i) by the ratio pmf(i)/pmf(i−1) = (n−i+1)/i · p/(1−p), from pmf(0) = (1−p)^n.
    let (mut pmf, mut cdf) = ((1.0 - p).powi(n as i32), 0.0);
    for i in 0..=k {
        if i > 0 {
            pmf *= (n - i + 1) as f64 / i as f64 * p / (1.0 - p);
        }
        cdf += pmf;
    }
    cdf.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_line_matches_a_hand_computed_case() {
        // x̄ = 2.5, ȳ = 2.75, Sxy = 5.5, Sxx = 5: slope 1.1, intercept 0; RSS = 2.7, SE =
        // √(1.35 / 5), t(0.975, 2) = 4.303.
        let f = fit_line(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 5.0]).unwrap();
        assert!((f.slope - 1.1).abs() < 1e-12 && f.intercept.abs() < 1e-12);
        let half = 4.303 * (1.35f64 / 5.0).sqrt();
        let (lo, hi) = f.ci95.unwrap();
        assert!((lo - (1.1 - half)).abs() < 1e-9);
        assert!((hi - (1.1 + half)).abs() < 1e-9);
    }

    #[test]
    fn fit_line_recovers_an_exact_power_law() {
        let kappas = [0.05f64, 0.1, 0.2, 0.4, 1.0];
        let (x, y): (Vec<f64>, Vec<f64>) = kappas
            .iter()
            .map(|k| (k.ln(), (3.0 * k.powf(1.7)).ln()))
            .unzip();
        let f = fit_line(&x, &y).unwrap();
        assert!((f.slope - 1.7).abs() < 1e-12);
        assert!((f.intercept - 3f64.ln()).abs() < 1e-12);
        let (lo, hi) = f.ci95.unwrap();
        assert!((hi - lo).abs() < 1e-6);
        assert!(fit_line(&[1.0, 1.0], &[2.0, 3.0]).is_none());
    }

    #[test]
    fn excess_exponent_fits_above_the_clean_floor_only() {
        // floor = 1 + 2κ², plus a κ whose floor is below the clean one (left out).
        let floors = [(0.0, 1.0), (0.1, 1.02), (0.5, 1.5), (1.0, 3.0), (0.2, 0.9)];
        let (clean, fit) = excess_exponent(&floors).unwrap();
        let fit = fit.unwrap();
        assert_eq!((clean, fit.points), (1.0, 3));
        assert!((fit.slope - 2.0).abs() < 1e-12);
        assert!(
            excess_exponent(&floors[1..])
                .unwrap_err()
                .contains("kappas must be a list containing 0")
        );
    }

    #[test]
    fn kolmogorov_q_gives_the_published_critical_values() {
        // Tabulated asymptotic critical values: 1.2238 (10%), 1.3581 (5%), 1.6276 (1%).
        assert!((kolmogorov_q(1.2238) - 0.10).abs() < 2e-4);
        assert!((kolmogorov_q(1.3581) - 0.05).abs() < 2e-4);
        assert!((kolmogorov_q(1.6276) - 0.01).abs() < 2e-4);
        assert_eq!(kolmogorov_q(0.0), 1.0);
    }

    #[test]
    fn ks_p_values_are_uniform_under_the_null_and_small_off_it() {
        // 4000 samples of 21 standard normals: P(p ≤ 0.1) must be 0.1 within 4 standard
        // errors (√(0.09/4000) = 0.0047); shifted by 1, the test rejects nearly always.
        let mut rng = gaussmask_core::rng::Stream::new(7, 0);
        let trials = 4000;
        let (mut null_small, mut shifted_small) = (0, 0);
        for _ in 0..trials {
            let z: Vec<f64> = (0..21).map(|_| rng.normal()).collect();
            null_small += usize::from(ks_normal(&z).unwrap().1 <= 0.1);
            let w: Vec<f64> = z.iter().map(|v| v + 1.0).collect();
            shifted_small += usize::from(ks_normal(&w).unwrap().1 <= 0.1);
        }
        let rate = null_small as f64 / trials as f64;
        assert!(
            (rate - 0.1).abs() < 4.0 * (0.09f64 / trials as f64).sqrt(),
            "{rate}"
        );
        assert!(shifted_small as f64 / trials as f64 > 0.9);
        assert!(ks_normal(&[]).is_none() && ks_normal(&[f64::NAN]).is_none());
    }

    #[test]
    fn max_abs_normal_tail_matches_closed_forms() {
        // One draw: the two-sided p-value; two: 1 − (1 − p)².
        assert!((max_abs_normal_tail(1.959_963_984_540_054, 1) - 0.05).abs() < 1e-12);
        let p = 2.0 * normal_cdf(-2.5);
        assert!((max_abs_normal_tail(2.5, 2) - (1.0 - (1.0 - p).powi(2))).abs() < 1e-15);
        assert!((max_abs_normal_tail(40.0, 1000) - 0.0).abs() < 1e-300);
        assert_eq!(max_abs_normal_tail(0.0, 5), 1.0);
    }

    #[test]
    fn binomial_cdf_matches_closed_forms() {
        let (n, p) = (21u64, 0.95f64);
        assert!((binomial_cdf(0, n, p) - 0.05f64.powi(21)).abs() < 1e-30);
        assert!((binomial_cdf(n - 1, n, p) - (1.0 - p.powi(21))).abs() < 1e-14);
        assert_eq!(binomial_cdf(n, n, p), 1.0);
        // P(X ≤ 1) for n = 3, p = 0.5: (1 + 3) / 8.
        assert!((binomial_cdf(1, 3, 0.5) - 0.5).abs() < 1e-15);
    }
}
