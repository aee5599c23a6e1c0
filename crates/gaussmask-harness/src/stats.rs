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

/// The κ-exponent of an excess floor: the clean floor (at κ = 0) and the fit of
/// log(floor(κ) − floor(0)) on log κ over the κ > 0 whose excess is positive (None with fewer
/// than two). `floors` are (κ, floor) pairs; None if κ = 0 is not among them.
pub fn excess_exponent(floors: &[(f64, f64)]) -> Option<(f64, Option<LineFit>)> {
    let clean = floors.iter().find(|(k, _)| *k == 0.0)?.1;
    let (x, y): (Vec<f64>, Vec<f64>) = floors
        .iter()
        .filter(|(k, f)| *k > 0.0 && *f > clean)
        .map(|(k, f)| (k.ln(), (f - clean).ln()))
        .unzip();
    Some((clean, fit_line(&x, &y)))
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
        assert!(excess_exponent(&floors[1..]).is_none());
    }
}
