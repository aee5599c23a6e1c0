//! What LiRA reads from one trained image classifier: the logit-scaled confidence φ of the true
//! class of every image (`gaussmask_privacy::lira::logit_confidence`), on the clean image and
//! averaged over masked copies drawn from the model's mask family at the training κ (an
//! attacker who knows the mask). Shared by the `lira` and `membership-inference` experiments.

use burn::tensor::Device;
use gaussmask_core::rng::{Stream, derive_seed, tag};
use gaussmask_nn::MaskConfig;
use gaussmask_nn::image::MaskedNet;
use gaussmask_privacy::lira::logit_confidence;
use gaussmask_train::classify::log_posteriors;

use crate::Images;

/// The log-posteriors of every image on the evaluation model `net` (mask off).
///
/// # Shapes
/// `[n · classes]`, row-major.
pub fn log_p(net: &MaskedNet, images: &Images, device: &Device) -> Vec<f64> {
    log_posteriors(net, images.view(), 500, device)
}

/// φ of every image of `images` from its log-posteriors `log_p` (as [`log_p`] gives them).
///
/// # Shapes
/// `[n]`.
pub fn phis(log_p: &[f64], images: &Images) -> Vec<f64> {
    log_p
        .chunks_exact(images.classes)
        .zip(&images.labels)
        .map(|(row, &y)| logit_confidence(row, y as usize))
        .collect()
}

/// The attacker's masked queries of model `model` (an index that, with `seed`, picks the
/// copies): the mean φ of every image over `queries` copies multiplied by masks drawn from
/// `mask` at `kappa`. The copies come from a stream of (seed, model, query), so every run and
/// every training length of one model sees the same ones. Without a mask (κ = 0 or no
/// queries) the clean φ, `clean`, is the answer.
///
/// # Shapes
/// `clean`: `[n]`; returns `[n]`.
#[allow(clippy::too_many_arguments)]
pub fn masked_phis(
    net: &MaskedNet,
    images: &Images,
    mask: &MaskConfig,
    kappa: f64,
    queries: usize,
    seed: u64,
    model: usize,
    clean: &[f64],
    device: &Device,
) -> Vec<f64> {
    if kappa == 0.0 || queries == 0 {
        return clean.to_vec();
    }
    let mut sum = vec![0.0; images.labels.len()];
    let mut draws = vec![0.0; images.x.len()];
    for k in 0..queries {
        let path = [model as u64, k as u64];
        let mut z = Stream::new(derive_seed(seed, tag::MONTE_CARLO, &path), tag::MASK);
        mask.fill(kappa, &mut z, &mut draws);
        let mut masked = images.clone();
        for (v, c) in masked.x.iter_mut().zip(&draws) {
            *v *= *c as f32;
        }
        for (s, p) in sum
            .iter_mut()
            .zip(phis(&log_p(net, &masked, device), images))
        {
            *s += p;
        }
    }
    sum.iter().map(|s| s / queries as f64).collect()
}
