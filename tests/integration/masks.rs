//! The mask layer: statistics of every family from both noise sources, ranks 2–4, evaluation
//! mode and κ = 0, resampling rules, per-replica streams, the same stream masks on every
//! backend, and checkpointing the stream state.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use gaussmask_harness::{Backend, Dtype, make_device};
use gaussmask_nn::tensor_io::{from_f64, to_f64};
use gaussmask_nn::{InputMask, MaskConfig, MaskFamily, MaskNoise, MaskResample, Replica};

use crate::device64;
use crate::engines::require_feature;

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

const FAMILIES: [MaskFamily; 4] = [
    MaskFamily::Gaussian,
    MaskFamily::LogNormal,
    MaskFamily::TruncatedGaussian,
    MaskFamily::Bernoulli,
];

/// One call's mask values: the layer applied to ones.
fn mask_values<const D: usize>(mask: &InputMask, shape: [usize; D], device: &Device) -> Vec<f64> {
    to_f64(mask.forward(Tensor::<D>::ones(shape, device)))
}

#[test]
fn every_family_has_mean_one_and_its_std_within_five_standard_errors_from_both_sources() {
    let device = device64();
    for noise in [MaskNoise::Stream, MaskNoise::Device] {
        device.seed(17);
        for family in FAMILIES {
            for kappa in [0.2, 1.0] {
                let config = MaskConfig::default().with_family(family).with_noise(noise);
                // 200 000 values through the layer's forward pass.
                let c = mask_values(&config.init(kappa, 11), [40_000, 5], &device);
                let (mean, sd, se_mean, se_sd) = moments(&c);
                let want_sd = config.std(kappa);
                let at = format!("{noise:?} {family:?} κ={kappa}");
                assert!(
                    (mean - 1.0).abs() < 5.0 * se_mean,
                    "{at}: mean {mean} (se {se_mean})"
                );
                assert!(
                    (sd - want_sd).abs() < 5.0 * se_sd,
                    "{at}: std {sd}, expected {want_sd} (se {se_sd})"
                );
                if family == MaskFamily::TruncatedGaussian {
                    let b = config.truncation * kappa;
                    assert!(
                        c.iter().all(|v| (v - 1.0).abs() <= b + 1e-12),
                        "{at}: support"
                    );
                }
                if family == MaskFamily::Bernoulli {
                    let keep = 1.0 / (1.0 + kappa * kappa);
                    assert!(
                        c.iter()
                            .all(|&v| v == 0.0 || (v - 1.0 / keep).abs() < 1e-12)
                    );
                }
            }
        }
    }
}

#[test]
fn std_of_each_family_matches_published_constants() {
    let std_of = |family| MaskConfig::default().with_family(family);
    // `std` against published constants, so the comparison above does not rest on the formula
    // it tests alone: Φ(2) = 0.9772498680518208 and φ(2) = 0.05399096651318806 (standard normal
    // tables) give the truncated family's factor √(1 − 2·2φ(2)/(2Φ(2) − 1)) = 0.87962566...;
    // log-normal: √(e^{κ²} − 1); Bernoulli with keep probability 1/(1 + κ²): κ.
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
fn ranks_two_to_four_keep_their_shape_and_masks_act_per_value() {
    let device = device64();
    for noise in [MaskNoise::Stream, MaskNoise::Device] {
        let config = MaskConfig::default().with_noise(noise);
        let mask = config.init(0.5, 3);
        let x2 = mask_values(&mask, [6, 5], &device);
        let x3 = mask_values(&mask, [6, 2, 3], &device);
        let x4 = mask_values(&mask, [6, 1, 4, 4], &device);
        for (c, len) in [(x2, 30), (x3, 36), (x4, 96)] {
            assert_eq!(c.len(), len);
            // A fresh mask is drawn per value: no two values of a call coincide.
            let mut sorted = c.clone();
            sorted.sort_by(f64::total_cmp);
            assert!(sorted.windows(2).all(|w| w[0] != w[1]), "{noise:?}: {c:?}");
        }
        // Rank 1 is one sample.
        assert_eq!(mask_values(&mask, [7], &device).len(), 7);
    }
}

/// The devices of a module's integer parameters (where the mask records its streams).
struct IntDevices(Vec<Device>);

impl burn::module::ModuleVisitor for IntDevices {
    fn visit_int<const D: usize>(
        &mut self,
        param: &burn::module::Param<Tensor<D, burn::tensor::Int>>,
    ) {
        self.0.push(param.val().device());
    }
}

#[test]
fn the_recorded_stream_state_lives_on_the_models_device_even_at_zero_kappa() {
    // Before, a κ = 0 mask never saw a masked input, so recording it (every optimizer step
    // visits the parameters) built its state on the default device: with the wgpu feature
    // compiled in, a CPU run started a GPU context.
    let device = device64();
    let on = |mask: &InputMask| {
        let mut seen = IntDevices(Vec::new());
        mask.visit(&mut seen);
        seen.0
    };
    let config = MaskConfig::default();
    for kappa in [0.0, 0.5] {
        assert_eq!(
            on(&config.init(kappa, 1).to_device(&device)),
            std::slice::from_ref(&device)
        );
        let mask = config.init(kappa, 1);
        mask.forward(from_f64(vec![1.0; 4], [2, 2], &device));
        assert_eq!(
            on(&mask),
            std::slice::from_ref(&device),
            "κ = {kappa}, after a forward pass"
        );
    }
    // The models build their mask on their own device.
    let net = gaussmask_nn::image::ImageModelConfig::default().init([1, 2, 2], 2, 0.0, 1, &device);
    let mut seen = IntDevices(Vec::new());
    net.visit(&mut seen);
    assert!(
        !seen.0.is_empty() && seen.0.iter().all(|d| *d == device),
        "{:?}",
        seen.0
    );
}

#[test]
fn evaluation_mode_and_zero_kappa_are_exactly_the_identity() {
    let device = device64();
    let x: Tensor<3> = from_f64(
        (0..24).map(|v| v as f64 * 0.37 - 2.0).collect(),
        [2, 3, 4],
        &device,
    );
    for noise in [MaskNoise::Stream, MaskNoise::Device] {
        let config = MaskConfig::default().with_noise(noise);
        let training = config.init(0.5, 1);
        assert_ne!(
            to_f64(training.forward(x.clone())),
            to_f64(x.clone()),
            "a training mask with κ > 0 changes its input"
        );
        // Like burn::nn::Dropout: valid() gives the identity.
        assert_eq!(
            to_f64(training.valid().forward(x.clone())),
            to_f64(x.clone())
        );
        assert_eq!(
            to_f64(config.init(0.0, 1).forward(x.clone())),
            to_f64(x.clone())
        );
        // κ = 0 replicas stay exactly clean next to masked ones.
        let reps = [(0.0, 1), (0.8, 2)].map(|(kappa, seed)| Replica { kappa, seed });
        let out = to_f64(config.init_replicas(&reps).forward(x.clone()));
        assert_eq!(&out[..12], &to_f64(x.clone())[..12], "{noise:?}");
        assert_ne!(&out[12..], &to_f64(x.clone())[12..], "{noise:?}");
        // So does a Bernoulli mask with its keep probability set (it drops nothing at κ = 0).
        let bernoulli = MaskConfig {
            family: MaskFamily::Bernoulli,
            keep_prob: Some(0.3),
            ..config.clone()
        };
        assert_eq!(
            to_f64(bernoulli.init(0.0, 1).forward(x.clone())),
            to_f64(x.clone()),
            "bernoulli {noise:?}"
        );
    }
}

#[test]
fn shared_inputs_are_broadcast_over_replicas() {
    let device = device64();
    let reps = [(0.3, 1), (1.0, 2), (0.6, 3)].map(|(kappa, seed)| Replica { kappa, seed });
    for noise in [MaskNoise::Stream, MaskNoise::Device] {
        let mask = MaskConfig::default().with_noise(noise).init_replicas(&reps);
        let x = Tensor::<3>::ones([1, 4, 2], &device);
        let out = mask.forward(x);
        assert_eq!(out.dims(), [3, 4, 2]);
        // Each replica's spread follows its own κ (8 values each: a loose, ordered check).
        let c = to_f64(out);
        let spread = |r: usize| {
            c[r * 8..(r + 1) * 8]
                .iter()
                .map(|v| (v - 1.0).abs())
                .sum::<f64>()
        };
        assert!(
            spread(0) > 0.0 && spread(1) > 0.0 && spread(2) > 0.0,
            "{noise:?}"
        );
    }
}

#[test]
fn resampling_rules() {
    let rows: Vec<usize> = vec![3, 1, 4];
    let d = 4;
    let fixed = MaskConfig::default()
        .with_resample(MaskResample::FixedPerSample)
        .init(0.5, 9);
    let first = fixed.sample(&rows, d);
    let again = fixed.sample(&[4, 3], d);
    // Sample 3 keeps its mask, and so does sample 4, whatever batch they come in.
    assert_eq!(&first[0..d], &again[d..2 * d]);
    assert_eq!(&first[2 * d..3 * d], &again[0..d]);
    // forward_indexed keys the masks by those indices too.
    let device = device64();
    let x = Tensor::<2>::ones([2, d], &device);
    assert_eq!(to_f64(fixed.forward_indexed(x, &[4, 3])), again);

    let fresh = MaskConfig::default().init(0.5, 9);
    let a = fresh.sample(&rows, d);
    let b = fresh.sample(&rows, d);
    assert_ne!(a, b, "fresh masks differ from step to step");

    for noise in [MaskNoise::Stream, MaskNoise::Device] {
        let shared = MaskConfig::default()
            .with_resample(MaskResample::SharedAcrossBatch)
            .with_noise(noise)
            .init(0.5, 9);
        let s = mask_values(&shared, [3, d], &device);
        assert_eq!(&s[0..d], &s[d..2 * d]);
        assert_eq!(&s[0..d], &s[2 * d..3 * d]);
        assert_ne!(s[0], s[1]);
    }

    let err = MaskConfig::default()
        .with_resample(MaskResample::FixedPerSample)
        .with_noise(MaskNoise::Device)
        .validate("model.mask")
        .unwrap_err();
    assert!(err.starts_with("model.mask.noise"), "{err}");
}

#[test]
fn a_replica_draws_the_same_masks_alone_and_in_a_batch() {
    let rows: Vec<usize> = (0..7).collect();
    let d = 3;
    let reps = [(0.2, 5), (1.0, 6), (0.6, 7)].map(|(kappa, seed)| Replica { kappa, seed });
    let batch = MaskConfig::default().init_replicas(&reps);
    let alone = MaskConfig::default().init_replicas(&reps[1..2]);
    for _ in 0..3 {
        let b = batch.sample(&rows, d);
        let a = alone.sample(&rows, d);
        assert_eq!(&b[rows.len() * d..2 * rows.len() * d], a.as_slice());
    }
}

#[test]
fn a_restored_stream_state_continues_bit_exactly() {
    let device = device64();
    let mask = MaskConfig::default().init(0.7, 21);
    let x = Tensor::<2>::ones([5, 3], &device);
    mask.forward(x.clone());
    let saved = mask.noise_state();
    let clone = mask.clone();
    let next: Vec<Vec<f64>> = (0..3).map(|_| to_f64(mask.forward(x.clone()))).collect();
    // A clone is an independent copy that continues identically.
    let from_clone: Vec<Vec<f64>> = (0..3).map(|_| to_f64(clone.forward(x.clone()))).collect();
    assert_eq!(next, from_clone);
    // A fresh mask of another seed, loaded with the saved state, draws the same masks.
    let restored = MaskConfig::default().init(0.7, 999);
    restored.load_noise_state(saved.clone()).unwrap();
    let resumed: Vec<Vec<f64>> = (0..3)
        .map(|_| to_f64(restored.forward(x.clone())))
        .collect();
    assert_eq!(next, resumed);
    // Burn's record of the layer (and so of any model holding it) carries the streams.
    let recorded = MaskConfig::default().init(0.7, 999);
    let record = {
        let m = MaskConfig::default().init(0.7, 21);
        m.forward(x.clone());
        m.into_record()
    };
    let recorded = recorded.load_record(record);
    let from_record: Vec<Vec<f64>> = (0..3)
        .map(|_| to_f64(recorded.forward(x.clone())))
        .collect();
    assert_eq!(next, from_record);
    // The state goes through a text codec intact, and a wrong replica count is refused.
    let text = serde_json::to_string(&saved).unwrap();
    assert_eq!(
        serde_json::from_str::<gaussmask_nn::MaskState>(&text).unwrap(),
        saved
    );
    let two = [
        Replica {
            kappa: 0.7,
            seed: 1,
        },
        Replica {
            kappa: 0.7,
            seed: 2,
        },
    ];
    let err = MaskConfig::default()
        .init_replicas(&two)
        .load_noise_state(saved)
        .unwrap_err();
    assert!(err.contains("2 replicas"), "{err}");
}

const BACKEND_REPLICAS: [(f64, u64); 2] = [(0.4, 8), (1.3, 9)];

/// Every family's second stream-mask call through the layer on `device`.
fn stream_masks_on(device: &Device) -> Vec<f64> {
    let reps = BACKEND_REPLICAS.map(|(kappa, seed)| Replica { kappa, seed });
    let families = FAMILIES.iter().flat_map(|&family| {
        let mask = MaskConfig::default()
            .with_family(family)
            .init_replicas(&reps);
        mask.forward(Tensor::<3>::ones([1, 40, 3], device));
        to_f64(mask.forward(Tensor::<3>::ones([1, 40, 3], device)))
    });
    families.collect()
}

#[test]
fn stream_masks_are_the_same_on_every_backend() {
    // The same calls drawn on the host, in f64.
    let reps = BACKEND_REPLICAS.map(|(kappa, seed)| Replica { kappa, seed });
    let host: Vec<f64> = FAMILIES
        .iter()
        .flat_map(|&family| {
            let mask = MaskConfig::default()
                .with_family(family)
                .init_replicas(&reps);
            let rows: Vec<usize> = (0..40).collect();
            mask.sample(&rows, 3);
            mask.sample(&rows, 3)
        })
        .collect();
    assert_eq!(stream_masks_on(&device64()), host, "flex f64");
    require_feature(cfg!(feature = "ndarray"), "ndarray");
    require_feature(cfg!(feature = "wgpu"), "wgpu");
    // Each backend keeps the float type the other tests of this binary give it.
    let ndarray = make_device(Backend::Ndarray, Dtype::F64).expect("ndarray device");
    assert_eq!(stream_masks_on(&ndarray), host, "ndarray f64");
    let wgpu = make_device(Backend::Wgpu, Dtype::F32).expect("wgpu device (lavapipe in CI)");
    let host_f32: Vec<f64> = host.iter().map(|&v| v as f32 as f64).collect();
    assert_eq!(stream_masks_on(&wgpu), host_f32, "wgpu f32");
}
