//! The Rényi-DP accountant of DP-SGD: the sampled Gaussian mechanism at integer orders
//! (Mironov, Talwar & Zhang 2019), converted to (ε, δ) with the bound of Balle et al. 2020 (as
//! TensorFlow Privacy's `compute_dp_sgd_privacy` does). Looser than the PLD accountant
//! ([`crate::pld`]); kept as the cross-check that may never fall below it.

/// log Σ exp of `terms`.
fn log_sum_exp(terms: &[f64]) -> f64 {
    let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

fn ln_choose(n: u32, k: u32) -> f64 {
    (1..=k)
        .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
        .sum()
}

/// Rényi DP of one step of the sampled Gaussian mechanism at integer order α ≥ 2: sampling
/// rate q, noise multiplier σ (noise std / clipping norm).
/// ε(α) = log(Σ_k C(α,k) (1−q)^{α−k} q^k exp((k² − k)/(2σ²))) / (α − 1).
pub fn rdp_sampled_gaussian(q: f64, sigma: f64, alpha: u32) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return alpha as f64 / (2.0 * sigma * sigma);
    }
    let terms: Vec<f64> = (0..=alpha)
        .map(|k| {
            let k_f = k as f64;
            ln_choose(alpha, k)
                + k_f * q.ln()
                + (alpha - k) as f64 * (1.0 - q).ln()
                + (k_f * k_f - k_f) / (2.0 * sigma * sigma)
        })
        .collect();
    log_sum_exp(&terms) / (alpha as f64 - 1.0)
}

/// The ε of DP-SGD after `steps` steps at sampling rate `q` and noise multiplier `sigma`, at
/// `delta`, with the order that attains it: the minimum over α ∈ {2, …, 256} of
/// T·ε(α) + log((α − 1)/α) − (log δ + log α)/(α − 1).
pub fn dp_sgd_epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> (f64, u32) {
    (2..=256u32)
        .map(|alpha| {
            let a = alpha as f64;
            let rdp = steps as f64 * rdp_sampled_gaussian(q, sigma, alpha);
            let eps = rdp + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0);
            (eps.max(0.0), alpha)
        })
        .fold(
            (f64::INFINITY, 0),
            |best, cur| {
                if cur.0 < best.0 { cur } else { best }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_matches_tensorflow_privacy_published_values() {
        // tensorflow/privacy, compute_dp_sgd_privacy_test.py: (n, batch, σ, epochs, δ) →
        // (ε, order): (60000, 150, 1.3, 15, 1e-5) → (0.7242234026109595, 19) and
        // (100000, 100, 1.0, 30, 1e-7) → (1.4154988495444845, 13); steps = ⌈epochs·n/batch⌉.
        let (eps, order) = dp_sgd_epsilon(150.0 / 60000.0, 1.3, 6000, 1e-5);
        assert!((eps - 0.7242234026109595).abs() < 1e-9, "{eps}");
        assert_eq!(order, 19);
        let (eps, order) = dp_sgd_epsilon(100.0 / 100000.0, 1.0, 30000, 1e-7);
        assert!((eps - 1.4154988495444845).abs() < 1e-9, "{eps}");
        assert_eq!(order, 13);
    }

    #[test]
    fn rdp_of_full_batches_is_the_gaussian_mechanism() {
        assert_eq!(rdp_sampled_gaussian(1.0, 2.0, 5), 5.0 / 8.0);
        // q → 1 from below agrees with it.
        assert!((rdp_sampled_gaussian(1.0 - 1e-12, 2.0, 5) - 5.0 / 8.0).abs() < 1e-9);
    }
}
