//! Mask statistics, evaluation mode, κ = 0, resampling rules and per-replica streams.

use burn::module::Module;
use burn::tensor::Tensor;
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_nn::{MaskConfig, MaskFamily, MaskNoise, MaskResample};

use crate::device64;

/// Sample mean, sample std and the standard errors of both (the std's from the sample's fourth
/// central moment: Var(s²) ≈ (m₄ − s⁴)/N, se(s) ≈ √Var(s²) / (2s)).
fn moments(values: &[f64]) -> (f64, f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let m2 = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let m4 = values.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
    let sd = m2.sqrt();
    let se_mean = sd / n.sqrt();
    let se_sd = ((m4 - m2 * m2) / n).sqrt() / (2.0 * sd);
    (mean, sd, se_mean, se_sd)
}

#[test]
fn every_family_has_mean_one_and_its_std_within_four_standard_errors() {
    let families = [
        MaskFamily::Gaussian,
        MaskFamily::LogNormal,
        MaskFamily::TruncatedGaussian,
        MaskFamily::Bernoulli,
    ];
    let rows: Vec<usize> = (0..40_000).collect();
    for family in families {
        for kappa in [0.2, 1.0] {
            let config = MaskConfig {
                family,
                ..MaskConfig::default()
            };
            let mask = config.init(&[kappa]);
            let mut noise = MaskNoise::new(&[11]);
            let c = mask.sample(&mut noise, &rows, 5);
            let (mean, sd, se_mean, se_sd) = moments(&c);
            let want_sd = config.std(kappa);
            assert!(
                (mean - 1.0).abs() < 4.0 * se_mean,
                "{family:?} κ={kappa}: mean {mean} (se {se_mean})"
            );
            assert!(
                (sd - want_sd).abs() < 4.0 * se_sd,
                "{family:?} κ={kappa}: std {sd}, expected {want_sd} (se {se_sd})"
            );
        }
    }
    // `std` against published constants, so the comparison above does not rest on the formula
    // it tests alone: Φ(2) = 0.9772498680518208 and φ(2) = 0.05399096651318806 (standard normal
    // tables) give the truncated family's factor √(1 − 2·2φ(2)/(2Φ(2) − 1)) = 0.87962566...;
    // log-normal: √(e^{κ²} − 1); Bernoulli with keep probability 1/(1 + κ²): κ.
    let std_of = |family| MaskConfig {
        family,
        ..MaskConfig::default()
    };
    let truncated = (1.0f64 - 4.0 * 0.05399096651318806 / (2.0 * 0.9772498680518208 - 1.0)).sqrt();
    for (family, want) in [
        (MaskFamily::TruncatedGaussian, 0.7 * truncated),
        (MaskFamily::LogNormal, (0.49f64.exp() - 1.0).sqrt()),
        (MaskFamily::Bernoulli, 0.7),
    ] {
        let got = std_of(family).std(0.7);
        assert!(
            (got - want).abs() < 1e-12 * want,
            "{family:?}: {got} vs {want}"
        );
    }
}

#[test]
fn evaluation_mode_and_zero_kappa_are_exactly_the_identity() {
    let device = device64();
    let x: Tensor<3> = from_f64(
        (0..24).map(|v| v as f64 * 0.37 - 2.0).collect(),
        [1, 4, 6],
        &device,
    );
    let rows: Vec<usize> = (0..4).collect();

    let training = MaskConfig::default().init(&[0.5]);
    let mut noise = MaskNoise::new(&[1]);
    let masked = to_f64(training.forward(x.clone(), &mut noise, &rows));
    assert_ne!(
        masked,
        to_f64(x.clone()),
        "a training mask with κ > 0 changes its input"
    );

    let eval = training.valid();
    assert_eq!(
        to_f64(eval.forward(x.clone(), &mut noise, &rows)),
        to_f64(x.clone())
    );

    let zero = MaskConfig::default().init(&[0.0]);
    assert_eq!(
        to_f64(zero.forward(x.clone(), &mut noise, &rows)),
        to_f64(x)
    );
}

#[test]
fn resampling_rules() {
    let rows: Vec<usize> = vec![3, 1, 4];
    let d = 4;
    let fixed = MaskConfig {
        resample: MaskResample::FixedPerSample,
        ..MaskConfig::default()
    }
    .init(&[0.5]);
    let mut noise = MaskNoise::new(&[9]);
    let first = fixed.sample(&mut noise, &rows, d);
    let again = fixed.sample(&mut noise, &[4, 3], d);
    // Sample 3 keeps its mask, and so does sample 4, whatever batch they come in.
    assert_eq!(&first[0..d], &again[d..2 * d]);
    assert_eq!(&first[2 * d..3 * d], &again[0..d]);

    let fresh = MaskConfig::default().init(&[0.5]);
    let a = fresh.sample(&mut noise, &rows, d);
    let b = fresh.sample(&mut noise, &rows, d);
    assert_ne!(a, b, "fresh masks differ from step to step");

    let shared = MaskConfig {
        resample: MaskResample::SharedAcrossBatch,
        ..MaskConfig::default()
    }
    .init(&[0.5]);
    let s = shared.sample(&mut noise, &rows, d);
    assert_eq!(&s[0..d], &s[d..2 * d]);
    assert_eq!(&s[0..d], &s[2 * d..3 * d]);
}

#[test]
fn a_replica_draws_the_same_masks_alone_and_in_a_batch() {
    let rows: Vec<usize> = (0..7).collect();
    let d = 3;
    let batch = MaskConfig::default().init(&[0.2, 1.0, 0.6]);
    let alone = MaskConfig::default().init(&[1.0]);
    let mut noise_batch = MaskNoise::new(&[5, 6, 7]);
    let mut noise_alone = MaskNoise::new(&[6]);
    for _ in 0..3 {
        let b = batch.sample(&mut noise_batch, &rows, d);
        let a = alone.sample(&mut noise_alone, &rows, d);
        assert_eq!(&b[rows.len() * d..2 * rows.len() * d], a.as_slice());
    }
}
