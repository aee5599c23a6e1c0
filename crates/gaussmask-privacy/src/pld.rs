//! The privacy-loss-distribution (PLD) accountant of DP-SGD: the Poisson-subsampled Gaussian
//! mechanism composed over its steps (Koskela, Jälkö & Honkela, AISTATS 2020; the method of
//! Google's `dp_accounting.pld`, which the tests compare against).
//!
//! With add-or-remove neighbours, one step is the pair P = (1 − q)·N(0, σ²) + q·N(1, σ²),
//! Q = N(0, σ²) (clipping norm 1), read both ways. For each direction the privacy loss
//! L = ln(p(x)/q(x)), x drawn from the first measure, is discretized on a grid of width `h` by
//! "connect the dots" (its privacy profile exact on the grid and bounded from above between,
//! so each ε is an upper bound), with δ at the top of the grid moved to +∞.
//! T steps compose by raising the discrete Fourier transform of the loss pmf to the T-th power
//! on a window that holds all but a 10⁻²⁰ mass of the sum (Chernoff bounds). Then
//! δ(ε) = P(L_T = ∞) + E[(1 − e^{ε − L_T})₊], and ε(δ) is its inverse; the larger of the two
//! directions is the mechanism's.

use std::sync::Arc;

use gaussmask_core::InputError;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex64;

/// Grid width of the privacy loss (nats), as `dp_accounting`'s default.
pub const DEFAULT_GRID: f64 = 1e-4;

/// Probability mass a truncation may leave out: the grid of one step ends where the normal
/// tails fall below it, and the window of the composition is sized to it.
const TAIL: f64 = 1e-20;

/// Name printed beside every ε this module computes.
pub const ACCOUNTANT: &str = "PLD (Poisson-subsampled Gaussian, add-or-remove)";

/// A discrete privacy-loss distribution: mass `pmf[i]` at loss `(offset + i)·h`, and
/// `infinite` at +∞.
#[derive(Clone, Debug)]
pub struct Pld {
    h: f64,
    offset: i64,
    pmf: Vec<f64>,
    infinite: f64,
}

impl Pld {
    /// δ(ε): the smallest δ for which this loss is (ε, δ)-DP.
    pub fn delta(&self, epsilon: f64) -> f64 {
        let mut delta = self.infinite;
        for (i, &p) in self.pmf.iter().enumerate() {
            let loss = (self.offset + i as i64) as f64 * self.h;
            if loss > epsilon {
                delta += p * (1.0 - (epsilon - loss).exp());
            }
        }
        delta.min(1.0)
    }

    /// ε(δ): the smallest ε ≥ 0 with δ(ε) ≤ `delta` (∞ if the mass at +∞ exceeds it).
    pub fn epsilon(&self, delta: f64) -> f64 {
        if self.infinite > delta {
            return f64::INFINITY;
        }
        if self.delta(0.0) <= delta {
            return 0.0;
        }
        // With a[k] = Σ_{i>k} p_i and b[k] = Σ_{i>k} p_i e^{−(i−k)h},
        // δ(ℓ_k + u) = P(∞) + a[k] − e^u·b[k] for u in [0, h): exact between grid points.
        let n = self.pmf.len();
        let decay = (-self.h).exp();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        for k in (0..n - 1).rev() {
            a[k] = a[k + 1] + self.pmf[k + 1];
            b[k] = decay * (b[k + 1] + self.pmf[k + 1]);
        }
        let loss = |k: usize| (self.offset + k as i64) as f64 * self.h;
        // The first grid point at or above 0 where δ has fallen to `delta` (the last always
        // has: only the mass at +∞ is left there).
        let k = (0..n)
            .find(|&k| loss(k) >= 0.0 && self.infinite + a[k] - b[k] <= delta)
            .unwrap_or(n - 1);
        // ε lies in [ℓ_{k−1}, ℓ_k]; below the grid's first point (k = 0) every mass counts,
        // and the same formula holds all the way down.
        let (start, above, weighted) = match k {
            0 => (
                loss(0) - self.h,
                self.pmf[0] + a[0],
                decay * (self.pmf[0] + b[0]),
            ),
            k => (loss(k - 1), a[k - 1], b[k - 1]),
        };
        let u = ((self.infinite + above - delta) / weighted)
            .ln()
            .min(self.h);
        let u = if k == 0 { u } else { u.max(0.0) };
        (start + u).max(0.0)
    }

    /// The `steps`-fold composition of this loss with itself.
    pub fn compose(&self, steps: u64) -> Pld {
        if steps == 1 {
            return self.clone();
        }
        let t = steps as f64;
        // Window of the sum: Chernoff bounds on both tails, from the cumulant generating
        // function K(λ) = ln Σ p_i e^{λ ℓ_i} of the finite part.
        let losses: Vec<f64> = (0..self.pmf.len())
            .map(|i| (self.offset + i as i64) as f64 * self.h)
            .collect();
        let cgf = |lambda: f64| {
            let m = losses
                .iter()
                .zip(&self.pmf)
                .filter(|(_, p)| **p > 0.0)
                .map(|(l, _)| lambda * l)
                .fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = losses
                .iter()
                .zip(&self.pmf)
                .map(|(l, p)| p * (lambda * l - m).exp())
                .sum();
            m + s.ln()
        };
        let log_tail = TAIL.ln();
        let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
        for k in 0..=160 {
            let lambda = 10f64.powf(-4.0 + k as f64 * 0.05);
            upper = upper.min((t * cgf(lambda) - log_tail) / lambda);
            lower = lower.max(-(t * cgf(-lambda) - log_tail) / lambda);
        }
        let first = (lower / self.h).floor() as i64;
        let last = (upper / self.h).ceil() as i64;
        let size = ((last - first + 1) as usize).next_power_of_two();
        let mut planner = FftPlanner::<f64>::new();
        let forward: Arc<dyn rustfft::Fft<f64>> = planner.plan_fft_forward(size);
        let inverse = planner.plan_fft_inverse(size);
        // One step's pmf, its index taken modulo the window (what lies outside the window
        // wraps around; the bounds keep that below 2·10⁻²⁰).
        let mut buffer = vec![Complex64::new(0.0, 0.0); size];
        for (i, &p) in self.pmf.iter().enumerate() {
            let slot = (i as i64).rem_euclid(size as i64) as usize;
            buffer[slot].re += p;
        }
        forward.process(&mut buffer);
        for z in &mut buffer {
            *z = z.powf(t);
        }
        inverse.process(&mut buffer);
        // Slot j holds the sum's mass at index steps·offset + j + m·size; keep the m that puts
        // it inside [first, first + size).
        let base = steps as i64 * self.offset;
        let mut pmf = vec![0.0; size];
        for (j, z) in buffer.iter().enumerate() {
            let index = base + j as i64;
            let slot = (index - first).rem_euclid(size as i64) as usize;
            pmf[slot] += (z.re / size as f64).max(0.0);
        }
        Pld {
            h: self.h,
            offset: first,
            pmf,
            // A sum is infinite when one of its terms is; the mass the window may have folded
            // down from above it is counted there too, so δ stays an upper bound.
            infinite: (1.0 - (1.0 - self.infinite).powf(t) + TAIL).min(1.0),
        }
    }

    /// The "connect the dots" PLD of a privacy profile `delta` (δ(ε) of one step) on the grid
    /// of width `h` over [`lo`, `hi`] (Doroshenko, Ghazi, Kamath, Kumar & Manurangsi, PETS
    /// 2022): δ as a function of e^ε is convex, and the discrete loss whose profile is its
    /// chord through the grid points bounds it from above everywhere and equals it on the
    /// grid. A kink of the chord at e^{ℓ_i} is a mass ω_i = (s_i − s_{i−1})·e^{ℓ_i}, s the
    /// chord's slopes; below the grid the slope is −1 (δ = 1 − e^ε there), above it 0, and
    /// δ at the top point is put at +∞.
    ///
    /// `profile(ε)` gives [δ(ε), δ(ε) − (1 − e^ε)]: where δ is near 1 its differences are
    /// rounding, and the second form (small there) gives the slope instead.
    fn connect_the_dots(h: f64, lo: f64, hi: f64, profile: impl Fn(f64) -> [f64; 2]) -> Pld {
        let first = (lo / h).floor() as i64;
        let last = (hi / h).ceil() as i64;
        let loss = |i: i64| i as f64 * h;
        let profile: Vec<[f64; 2]> = (first..=last).map(|i| profile(loss(i))).collect();
        let infinite = profile[profile.len() - 1][0];
        // Slopes in y = e^ε between consecutive points, with −1 before the first.
        let slope = |k: usize| {
            let dy = loss(first + k as i64).exp() * h.exp_m1();
            let ([d0, c0], [d1, c1]) = (profile[k], profile[k + 1]);
            if d0 < 0.5 {
                (d1 - d0) / dy
            } else {
                -1.0 + (c1 - c0) / dy
            }
        };
        let n = profile.len();
        let pmf = (0..n)
            .map(|k| {
                let before = if k == 0 { -1.0 } else { slope(k - 1) };
                let after = if k + 1 == n { 0.0 } else { slope(k) };
                ((after - before) * loss(first + k as i64).exp()).max(0.0)
            })
            .collect();
        Pld {
            h,
            offset: first,
            pmf,
            infinite,
        }
    }
}

/// Φ(z), the standard normal CDF.
fn phi(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// The two losses of one step of the Poisson-subsampled Gaussian mechanism (sampling rate
/// `q`, noise multiplier `sigma`, clipping norm 1), as [`Pld`]s on a grid of width `h`:
/// (remove: x ~ P, add: x ~ Q) with P, Q as the module says.
///
/// # Panics
/// `q` outside (0, 1] or `sigma` not > 0 (the callers check both).
pub fn sampled_gaussian_step(q: f64, sigma: f64, h: f64) -> [Pld; 2] {
    assert!(q > 0.0 && q <= 1.0 && sigma > 0.0, "q = {q}, σ = {sigma}");
    let s2 = sigma * sigma;
    // x(ℓ): the point where ln((1 − q) + q·e^{(2x − 1)/(2σ²)}) = ℓ, for ℓ > ln(1 − q).
    let x_of = |l: f64| s2 * ((l.exp() - (1.0 - q)) / q).ln() + 0.5;
    let floor = (1.0 - q).ln();
    // Where the normal tails fall below TAIL: |z| ≤ 9.3.
    let z = 9.3;
    let loss_at = |x: f64| ((1.0 - q) + q * ((2.0 * x - 1.0) / (2.0 * s2)).exp()).ln();
    let p_cdf = |x: f64| (1.0 - q) * phi(x / sigma) + q * phi((x - 1.0) / sigma);
    let p_sf = |x: f64| (1.0 - q) * phi(-x / sigma) + q * phi((1.0 - x) / sigma);
    // Remove: x ~ P, L = ln r(x) increasing in x, from ln(1 − q) up;
    // δ(ε) = P(L > ε) − e^ε·Q(L > ε).
    let remove = Pld::connect_the_dots(
        h,
        floor.max(loss_at(1.0 - z * sigma)),
        loss_at(1.0 + z * sigma),
        |l| {
            if l <= floor {
                [1.0 - l.exp(), 0.0]
            } else {
                let x = x_of(l);
                [
                    (p_sf(x) - l.exp() * phi(-x / sigma)).max(0.0),
                    l.exp() * phi(x / sigma) - p_cdf(x),
                ]
            }
        },
    );
    // Add: x ~ Q = N(0, σ²), L = −ln r(x) decreasing in x, up to −ln(1 − q);
    // δ(ε) = Q(L > ε) − e^ε·P(L > ε), where L > ε is x < x(−ε).
    let ceiling = -floor;
    let add = Pld::connect_the_dots(
        h,
        -loss_at(z * sigma),
        ceiling.min(-loss_at(-z * sigma)),
        |l| {
            if l >= ceiling {
                [0.0, l.exp() - 1.0]
            } else {
                let x = x_of(-l);
                [
                    (phi(x / sigma) - l.exp() * p_cdf(x)).max(0.0),
                    l.exp() * p_sf(x) - phi(-x / sigma),
                ]
            }
        },
    );
    [remove, add]
}

/// Both directions of DP-SGD's loss with Poisson sampling after `steps` steps at rate `q` and
/// noise multiplier `sigma`, on a grid of width `h`.
fn composed(q: f64, sigma: f64, steps: u64, h: f64) -> Vec<Pld> {
    sampled_gaussian_step(q, sigma, h)
        .iter()
        .map(|step| step.compose(steps))
        .collect()
}

/// ε of DP-SGD with Poisson sampling after `steps` steps at rate `q` and noise multiplier
/// `sigma`, at `delta`, from the PLD accountant on a grid of width `h` ([`DEFAULT_GRID`]
/// unless a test asks otherwise): an upper bound, the larger of the two directions. Clipping
/// without noise (σ = 0) has no finite ε.
pub fn pld_epsilon(q: f64, sigma: f64, steps: u64, delta: f64, h: f64) -> f64 {
    if steps == 0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    composed(q, sigma, steps, h)
        .iter()
        .map(|pld| pld.epsilon(delta))
        .fold(0.0, f64::max)
}

/// δ of the same composition at `epsilon` (the larger of the two directions). Without noise
/// (σ = 0) an example shows itself whenever it is sampled: δ = 1 − (1 − q)^steps at every ε.
pub fn pld_delta(q: f64, sigma: f64, steps: u64, epsilon: f64, h: f64) -> f64 {
    if steps == 0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return 1.0 - (1.0 - q).powf(steps as f64);
    }
    composed(q, sigma, steps, h)
        .iter()
        .map(|pld| pld.delta(epsilon))
        .fold(0.0, f64::max)
}

/// The smallest noise multiplier σ (to a relative 10⁻³) at which DP-SGD with Poisson sampling
/// at rate `q` for `steps` steps is (`epsilon`, `delta`)-DP by the PLD accountant, as Opacus's
/// `get_noise_multiplier` answers it. The search runs on a grid of width 10⁻³; the returned σ
/// meets the target on that grid, and [`pld_epsilon`] on the finer [`DEFAULT_GRID`] is tighter
/// still.
///
/// # Errors
/// No σ up to 10⁴ reaches the target (an ε below what any noise gives at this δ).
pub fn noise_for_epsilon(q: f64, steps: u64, delta: f64, epsilon: f64) -> Result<f64, InputError> {
    let h = 1e-3;
    let meets = |sigma: f64| pld_epsilon(q, sigma, steps, delta, h) <= epsilon;
    let (mut lo, mut hi) = (0.05, 1.0);
    while !meets(hi) {
        lo = hi;
        hi *= 4.0;
        if hi > 1e4 {
            return Err(format!(
                "no noise multiplier up to 10⁴ gives ε = {epsilon} at δ = {delta} over {steps} \
                 steps at sampling rate {q}"
            )
            .into());
        }
    }
    if meets(lo) {
        return Ok(lo);
    }
    while hi / lo > 1.0 + 1e-3 {
        let mid = (lo * hi).sqrt();
        if meets(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_full_batch_step_is_the_gaussian_mechanism() {
        // q = 1: the Gaussian mechanism, whose exact δ(ε) is (Balle & Wang 2018)
        // Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ).
        for (sigma, eps) in [(1.0, 1.0), (0.5, 3.0), (2.0, 0.2)] {
            let exact =
                phi(0.5 / sigma - eps * sigma) - eps.exp() * phi(-0.5 / sigma - eps * sigma);
            let got = pld_delta(1.0, sigma, 1, eps, 1e-4);
            // ε on the grid: the chord meets the profile there.
            assert!(
                (got - exact).abs() <= 1e-9 * exact,
                "{sigma} {eps}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn composition_of_full_batches_is_the_gaussian_mechanism_of_sigma_over_root_t() {
        // T Gaussian steps at σ are one at σ/√T.
        let (sigma, steps, eps) = (2.0, 16u64, 1.5);
        let single = sigma / (steps as f64).sqrt();
        let exact =
            phi(0.5 / single - eps * single) - eps.exp() * phi(-0.5 / single - eps * single);
        let got = pld_delta(1.0, sigma, steps, eps, 1e-4);
        assert!(got >= exact && got <= exact * 1.01, "{got} vs {exact}");
    }

    #[test]
    fn the_noise_for_a_target_epsilon_meets_it_and_a_little_less_does_not() {
        let (q, steps, delta, target) = (0.02, 200, 1e-5, 2.0);
        let sigma = noise_for_epsilon(q, steps, delta, target).unwrap();
        assert!(pld_epsilon(q, sigma, steps, delta, 1e-3) <= target);
        assert!(
            pld_epsilon(q, sigma / 1.01, steps, delta, 1e-3) > target,
            "{sigma}"
        );
    }

    #[test]
    fn clipping_without_noise_has_no_finite_epsilon() {
        assert_eq!(pld_epsilon(0.1, 0.0, 10, 1e-5, 1e-4), f64::INFINITY);
        let delta = pld_delta(0.1, 0.0, 10, 5.0, 1e-4);
        assert!((delta - (1.0 - 0.9f64.powi(10))).abs() < 1e-15, "{delta}");
    }

    #[test]
    fn each_step_pmf_holds_its_whole_mass_and_e_to_the_minus_loss_averages_one() {
        for (q, sigma) in [(0.01, 0.8), (0.3, 2.0), (1.0, 0.5)] {
            for pld in sampled_gaussian_step(q, sigma, 1e-3) {
                let total: f64 = pld.pmf.iter().sum::<f64>() + pld.infinite;
                let mean: f64 = pld
                    .pmf
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p * (-((pld.offset + i as i64) as f64 * pld.h)).exp())
                    .sum();
                // E[e^{−L}] = 1 by construction (the slopes run from −1 to 0); the chord
                // moves probability mass by O(h) at most.
                assert!((mean - 1.0).abs() < 1e-9, "{q} {sigma}: {mean}");
                assert!((total - 1.0).abs() < 1e-3, "{q} {sigma}: {total}");
            }
        }
    }
}
