//! The generic training loop: it reproduces the two-layer reference engine and `train_deep`
//! step for step, trains a user's own Burn module behind the mask, and names bad settings.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::tanh;
use gaussmask_data::SyntheticConfig;
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{InputMask, MaskConfig, MaskResample, Replica, TwoLayerReluConfig};
use gaussmask_train::fit::{Batch, FitConfig, Optimizer, Schedule, Trainable, fit};
use gaussmask_train::{Engine, Objective, TrainConfig, train_two_layer};

use crate::device64;

fn replicas() -> [Replica; 3] {
    [(0.0, 1), (0.4, 2), (1.2, 3)].map(|(kappa, seed)| Replica { kappa, seed })
}

fn train_config(optimizer: Optimizer, batch_size: Option<usize>, momentum: f64) -> TrainConfig {
    TrainConfig {
        steps: 30,
        lr: if optimizer == Optimizer::Adam {
            0.01
        } else {
            0.004
        },
        lr_output: None,
        optimizer,
        momentum,
        batch_size,
        objective: Objective::Masked,
        log_every: 1,
        masks_per_step: 1,
        exact_chunk: 32,
        shuffle_seed: 5,
        engine: Engine::Autodiff,
        diagnostics_every: 0,
    }
}

fn fit_config(t: &TrainConfig) -> FitConfig {
    FitConfig {
        steps: t.steps,
        batch_size: t.batch_size,
        lr: t.lr,
        optimizer: t.optimizer,
        momentum: t.momentum,
        shuffle_seed: t.shuffle_seed,
        ..FitConfig::default()
    }
}

#[test]
fn fit_reproduces_the_reference_engine_on_the_two_layer_net() {
    let device = device64().autodiff();
    let data = SyntheticConfig::new(120, 6).generate();
    let mut model = TwoLayerReluConfig::new(6, 20);
    for (name, t, resample) in [
        (
            "full-batch GD",
            train_config(Optimizer::Gd, None, 0.0),
            MaskResample::Fresh,
        ),
        (
            "SGD with momentum, fixed masks",
            train_config(Optimizer::Gd, Some(32), 0.9),
            MaskResample::FixedPerSample,
        ),
        (
            "Adam minibatches",
            train_config(Optimizer::Adam, Some(40), 0.0),
            MaskResample::Fresh,
        ),
    ] {
        model.mask.resample = resample;
        let mut reference = Vec::new();
        let trained = train_two_layer(&model, &replicas(), &data, &t, &device, |r| {
            reference.push(r.masked_loss.clone())
        })
        .unwrap();
        let mut losses = Vec::new();
        let net = model.init(&replicas(), &device);
        let fitted = fit(net, &data, &fit_config(&t), &device, |log, _| {
            losses.push(log.loss.clone())
        })
        .unwrap();
        assert_eq!(losses.len(), t.steps + 1, "{name}");
        // Same masks, same batches, same optimizer: the same numbers, bit for bit.
        assert_eq!(losses, reference, "{name}: losses");
        assert_eq!(
            to_f64(fitted.w.val()),
            to_f64(trained.w.val()),
            "{name}: weights"
        );
        assert!(
            losses[t.steps][2] < 0.9 * losses[0][2],
            "{name}: did not train"
        );
    }
}

/// A user's model (examples/custom_model.rs has a residual one): the mask in front of a tanh
/// MLP from burn::nn, the layers in a Vec.
#[derive(Module, Debug)]
struct TanhMlp {
    mask: InputMask,
    layers: Vec<Linear>,
}

impl TanhMlp {
    fn new(kappa: f64, d: usize, width: usize, device: &burn::tensor::Device) -> Self {
        let sizes = [d, width, width, 1];
        Self {
            mask: MaskConfig::default().init(kappa, 7),
            layers: sizes
                .windows(2)
                .map(|io| LinearConfig::new(io[0], io[1]).init(device))
                .collect(),
        }
    }

    fn predict(&self, x: Tensor<2>) -> Tensor<1> {
        let (last, hidden) = self.layers.split_last().expect("layers");
        let h = hidden.iter().fold(x, |h, layer| tanh(layer.forward(h)));
        last.forward(h).squeeze_dim(1)
    }
}

impl Trainable for TanhMlp {
    fn loss(&self, batch: &Batch) -> Tensor<1> {
        let x = self.mask.forward_indexed(batch.x.clone(), &batch.rows);
        (self.predict(x) - batch.y.clone())
            .square()
            .mean()
            .reshape([1])
    }
}

fn clean_mse(model: &TanhMlp, data: &gaussmask_data::Dataset) -> f64 {
    let device = device64();
    let b = gaussmask_train::fit::batch(data, &(0..data.n).collect::<Vec<_>>(), &device);
    let model = model.valid();
    to_f64((model.predict(b.x) - b.y).square().mean())[0]
}

#[test]
fn a_users_own_module_trains_behind_the_mask_and_kappa_zero_is_clean_training() {
    let device = device64().autodiff();
    let data = SyntheticConfig::new(200, 8).generate();
    let config = FitConfig {
        steps: 150,
        batch_size: Some(50),
        lr: 0.01,
        optimizer: Optimizer::AdamW,
        weight_decay: 1e-4,
        schedule: Schedule::Cosine,
        min_lr: 0.001,
        ..FitConfig::default()
    };
    device.seed(3);
    let start = TanhMlp::new(0.5, 8, 32, &device);
    let before = clean_mse(&start, &data);
    let masked = fit(start.clone(), &data, &config, &device, |_, _| {}).unwrap();
    let after = clean_mse(&masked, &data);
    assert!(after < 0.5 * before, "clean MSE {before} → {after}");

    // κ = 0: the mask is exactly the identity, so training equals training without it.
    let zero = TanhMlp {
        mask: MaskConfig::default().init(0.0, 7),
        ..start.clone()
    };
    let with_identity = fit(zero, &data, &config, &device, |_, _| {}).unwrap();
    #[derive(Module, Debug)]
    struct NoMask {
        net: TanhMlp,
    }
    impl Trainable for NoMask {
        fn loss(&self, batch: &Batch) -> Tensor<1> {
            let f = self.net.predict(batch.x.clone());
            (f - batch.y.clone()).square().mean().reshape([1])
        }
    }
    let without = fit(NoMask { net: start }, &data, &config, &device, |_, _| {}).unwrap();
    assert_eq!(
        to_f64(with_identity.layers[2].weight.val()),
        to_f64(without.net.layers[2].weight.val())
    );
    // The mask's noise makes the masked run end elsewhere.
    assert_ne!(
        to_f64(masked.layers[2].weight.val()),
        to_f64(with_identity.layers[2].weight.val())
    );
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let device = device64().autodiff();
    let data = SyntheticConfig::new(20, 3).generate();
    for (config, field) in [
        (
            FitConfig {
                steps: 0,
                ..FitConfig::default()
            },
            "train.steps",
        ),
        (
            FitConfig {
                lr: -1.0,
                ..FitConfig::default()
            },
            "train.lr",
        ),
        (
            FitConfig {
                batch_size: Some(21),
                ..FitConfig::default()
            },
            "train.batch_size",
        ),
        (
            FitConfig {
                momentum: 1.0,
                ..FitConfig::default()
            },
            "train.momentum",
        ),
        (
            FitConfig {
                schedule: Schedule::Cosine,
                min_lr: 1.0,
                ..FitConfig::default()
            },
            "train.min_lr",
        ),
        (
            FitConfig {
                masks_per_step: 0,
                ..FitConfig::default()
            },
            "train.masks_per_step",
        ),
        // DP-SGD clips one masked gradient per sample: a mean over masks is refused, not
        // silently ignored.
        (
            FitConfig {
                masks_per_step: 3,
                dp: Some(gaussmask_train::fit::DpSgd {
                    clip: 1.0,
                    noise_multiplier: 0.5,
                }),
                ..FitConfig::default()
            },
            "train.masks_per_step must be 1 with train.dp",
        ),
    ] {
        let net = TwoLayerReluConfig::new(3, 4).init(&replicas(), &device);
        let err = fit(net, &data, &config, &device, |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
}

#[test]
fn a_fit_stopped_and_resumed_from_its_checkpoint_ends_bit_exactly() {
    // f32 (Burn restores optimizer state in the default device's float type): on wgpu.
    let (_training, device) = crate::engines::wgpu_training();
    let device = device.autodiff();
    let data = SyntheticConfig::new(120, 8).generate();
    // Everything with state: minibatch order, AdamW moments, a cosine schedule, k masks a step.
    let config = FitConfig {
        steps: 40,
        batch_size: Some(32),
        lr: 0.01,
        optimizer: Optimizer::AdamW,
        weight_decay: 1e-3,
        schedule: Schedule::Cosine,
        min_lr: 0.001,
        masks_per_step: 2,
        shuffle_seed: 9,
        ..FitConfig::default()
    };
    device.seed(11);
    let start = TanhMlp::new(0.6, 8, 16, &device);
    let mut straight = Vec::new();
    let whole = fit(start.clone(), &data, &config, &device, |l, _| {
        straight.push(l.clone())
    })
    .unwrap();

    let mut first = gaussmask_train::fit::Fit::new(start, &data, &config, &device).unwrap();
    first.run_until(17, |_, _| {}).unwrap();
    assert_eq!(first.step(), 17);
    let bytes = first.checkpoint().unwrap();
    drop(first);
    // A template of other weights and another mask seed: the checkpoint replaces both.
    device.seed(12);
    let template = TanhMlp {
        mask: MaskConfig::default().init(0.6, 1234),
        ..TanhMlp::new(0.6, 8, 16, &device)
    };
    let mut resumed =
        gaussmask_train::fit::Fit::resume(template, &bytes, &data, &config, &device).unwrap();
    let mut after = Vec::new();
    resumed
        .run_until(config.steps, |l, _| after.push(l.clone()))
        .unwrap();
    let resumed = resumed.into_model();
    assert_eq!(after, straight[17..].to_vec(), "losses after the resume");
    for (a, b) in whole.layers.iter().zip(&resumed.layers) {
        assert_eq!(to_f64(a.weight.val()), to_f64(b.weight.val()));
    }

    // A checkpoint of another run shape is refused in one line.
    let short = gaussmask_data::Dataset {
        n: 100,
        x: data.x[..800].to_vec(),
        y: data.y[..100].to_vec(),
        d: 8,
    };
    let template = TanhMlp::new(0.6, 8, 16, &device);
    let err = gaussmask_train::fit::Fit::resume(template, &bytes, &short, &config, &device)
        .err()
        .unwrap();
    // Another run's data: a mismatch, not a failure to set the run up.
    assert!(
        matches!(&err, gaussmask_train::StateError::Mismatch(m) if m.starts_with("not a training checkpoint")),
        "{err}"
    );
    let template = TanhMlp::new(0.6, 8, 16, &device);
    let err = gaussmask_train::fit::Fit::resume(template, &bytes[..50], &data, &config, &device)
        .err()
        .unwrap();
    assert!(
        matches!(err, gaussmask_train::StateError::Mismatch(_)),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'), "{err}");
}
