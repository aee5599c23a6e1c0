//! The fused engines (host, fused) follow the autodiff reference step for step: same masks,
//! same trajectory up to rounding, on every backend where they run.

use burn::tensor::Device;
use gaussmask_data::SyntheticConfig;
use gaussmask_harness::{Backend, Dtype, make_device};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{MaskFamily, MaskNoise, MaskResample, Replica, TwoLayerReluConfig};
use gaussmask_train::{Engine, LogRecord, Objective, Optimizer, TrainConfig, train_two_layer};

use crate::device64;

/// Logged losses and final weights (W then a) of one run.
fn run(
    engine: Engine,
    model: &TwoLayerReluConfig,
    config: &TrainConfig,
    n: usize,
    device: &Device,
) -> (Vec<LogRecord>, Vec<f64>) {
    let data = SyntheticConfig::new(n, model.input_dim).generate();
    // κ = 0 (the identity), a mild and a heavy mask; two seeds of one κ.
    let replicas =
        [(0.0, 1), (0.3, 2), (1.5, 3), (0.3, 4)].map(|(kappa, seed)| Replica { kappa, seed });
    let config = TrainConfig {
        engine,
        ..config.clone()
    };
    let mut logs = Vec::new();
    let trained = train_two_layer(model, &replicas, &data, &config, device, |r| {
        logs.push(r.clone())
    })
    .unwrap_or_else(|e| panic!("{engine} engine: {e}"));
    let mut weights = to_f64(trained.w.val());
    weights.extend(to_f64(trained.a.val()));
    (logs, weights)
}

fn base_config() -> TrainConfig {
    TrainConfig {
        steps: 50,
        lr: 0.004,
        lr_output: None,
        optimizer: Optimizer::Gd,
        momentum: 0.0,
        batch_size: None,
        objective: Objective::Masked,
        log_every: 1,
        masks_per_step: 1,
        exact_chunk: 32,
        shuffle_seed: 5,
        engine: Engine::Auto,
        diagnostics_every: 0,
    }
}

/// The settings every engine must reproduce: full batch over several units of rows, minibatches
/// with momentum and trained signs, other mask families and resampling rules, no mask.
fn cases() -> Vec<(&'static str, TwoLayerReluConfig, TrainConfig)> {
    let model = TwoLayerReluConfig::new(7, 24);
    let mut cases = vec![("full batch", model.clone(), base_config())];
    let mut c = base_config();
    c.batch_size = Some(96);
    c.momentum = 0.9;
    c.lr_output = Some(0.002);
    let mut m = model.clone();
    m.train_output = true;
    cases.push(("minibatch, momentum, trained signs", m, c));
    let mut m = model.clone();
    m.mask.family = MaskFamily::Bernoulli;
    m.mask.resample = MaskResample::FixedPerSample;
    cases.push(("bernoulli fixed per sample", m, base_config()));
    let mut m = model.clone();
    m.mask.family = MaskFamily::LogNormal;
    m.mask.resample = MaskResample::SharedAcrossBatch;
    cases.push(("log-normal shared across batch", m, base_config()));
    let mut c = base_config();
    c.objective = Objective::Clean;
    cases.push(("clean objective", model, c));
    cases
}

/// Max over the run of |fast − reference| / |reference| for the logged losses, and
/// ‖fast − reference‖∞ / ‖reference‖∞ for the final weights.
fn compare(reference: &(Vec<LogRecord>, Vec<f64>), fast: &(Vec<LogRecord>, Vec<f64>)) -> f64 {
    assert_eq!(reference.0.len(), fast.0.len());
    let mut worst: f64 = 0.0;
    for (r, f) in reference.0.iter().zip(&fast.0) {
        assert_eq!(r.step, f.step);
        for (x, y) in r
            .clean_loss
            .iter()
            .chain(&r.masked_loss)
            .zip(f.clean_loss.iter().chain(&f.masked_loss))
        {
            worst = worst.max((x - y).abs() / x.abs());
        }
    }
    let scale = reference.1.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    let diff = reference
        .1
        .iter()
        .zip(&fast.1)
        .fold(0.0f64, |s, (x, y)| s.max((x - y).abs()));
    worst.max(diff / scale)
}

/// Every case, every fast engine, against the autodiff reference on `device`.
fn engines_agree(device: &Device, engines: &[Engine], n: usize, tolerance: f64) {
    for (name, model, config) in cases() {
        let reference = run(Engine::Autodiff, &model, &config, n, device);
        // The run trained: the comparison is not between two frozen runs.
        let (first, last) = (&reference.0[0], reference.0.last().unwrap());
        assert!(
            last.clean_loss[1] < 0.95 * first.clean_loss[1],
            "{name}: did not train"
        );
        for &engine in engines {
            let rel = compare(&reference, &run(engine, &model, &config, n, device));
            assert!(
                rel <= tolerance,
                "{name}, {engine} engine: relative difference {rel:e}"
            );
        }
    }
}

/// A backend the tests need was not compiled in: fail, never skip.
pub(crate) fn require_feature(on: bool, name: &str) {
    assert!(
        on,
        "built without the `{name}` feature: run `cargo test --release --workspace --all-features`"
    );
}

/// The wgpu device in f32 (what every test of this binary opens it in; lavapipe in CI), for a
/// test that trains on it, with a lock held while the test runs: a training seeds the device's
/// one generator at every step, so two at once would draw (dropout) from each other's seeds.
pub(crate) fn wgpu_training() -> (std::sync::MutexGuard<'static, ()>, Device) {
    static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    require_feature(cfg!(feature = "wgpu"), "wgpu");
    let lock = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let device = make_device(Backend::Wgpu, Dtype::F32).expect("wgpu device (lavapipe in CI)");
    (lock, device)
}

#[test]
fn fused_engines_follow_autodiff_in_f64_on_flex() {
    // 300 rows: two units of work for the host engine, one of them partial.
    engines_agree(&device64(), &[Engine::Host, Engine::Fused], 300, 1e-5);
}

#[test]
fn fused_engines_follow_autodiff_in_f64_on_ndarray() {
    require_feature(cfg!(feature = "ndarray"), "ndarray");
    let device = make_device(Backend::Ndarray, Dtype::F64).expect("ndarray device");
    engines_agree(&device, &[Engine::Host, Engine::Fused], 300, 1e-5);
}

#[test]
fn fused_engine_follows_autodiff_in_f32_on_wgpu() {
    let (_training, device) = wgpu_training();
    // f32 on both sides: the tolerance is f32 rounding grown over 50 steps.
    engines_agree(&device, &[Engine::Fused], 300, 1e-3);
}

#[test]
fn gpu_devices_are_recognised_at_run_time() {
    // `engine = "auto"` picks the host engine on a CPU and the fused one on a GPU.
    let flex = burn::tensor::Device::flex();
    assert!(!gaussmask_train::is_gpu(&flex));
    assert!(!gaussmask_train::is_gpu(&flex.autodiff()));
    require_feature(cfg!(feature = "wgpu"), "wgpu");
    let device = make_device(Backend::Wgpu, Dtype::F32).expect("wgpu device (lavapipe in CI)");
    assert!(gaussmask_train::is_gpu(&device));
    assert!(gaussmask_train::is_gpu(&device.autodiff()));
}

#[test]
fn host_engine_results_do_not_depend_on_batch_mates() {
    // Units of work are fixed-size row blocks, so a replica's gradient is summed in the same
    // order alone and in a sweep: bit-identical, not just close.
    let model = TwoLayerReluConfig::new(7, 24);
    let data = SyntheticConfig::new(600, 7).generate();
    let config = TrainConfig {
        engine: Engine::Host,
        ..base_config()
    };
    let target = Replica {
        kappa: 0.4,
        seed: 9,
    };
    let others = Replica {
        kappa: 1.0,
        seed: 8,
    };
    let mut alone = Vec::new();
    train_two_layer(&model, &[target], &data, &config, &device64(), |r| {
        alone.push(r.clean_loss[0])
    })
    .unwrap();
    let mut together = Vec::new();
    train_two_layer(
        &model,
        &[others, target, others],
        &data,
        &config,
        &device64(),
        |r| together.push(r.clean_loss[1]),
    )
    .unwrap();
    assert_eq!(alone, together);
}

#[test]
fn device_noise_trains_on_the_tensor_engines_and_the_host_engine_refuses_it() {
    let device = device64();
    let mut model = TwoLayerReluConfig::new(7, 24);
    model.mask.noise = MaskNoise::Device;
    // auto on a CPU would pick the host engine; with device noise it runs the fused one.
    for engine in [Engine::Auto, Engine::Fused, Engine::Autodiff] {
        let (logs, _) = run(engine, &model, &base_config(), 200, &device);
        let (first, last) = (&logs[0], logs.last().unwrap());
        assert!(
            last.clean_loss[2] < 0.95 * first.clean_loss[2],
            "{engine}: κ = 1.5 under device noise did not train"
        );
    }
    let data = SyntheticConfig::new(50, 7).generate();
    let config = TrainConfig {
        engine: Engine::Host,
        ..base_config()
    };
    let replicas = [Replica {
        kappa: 0.5,
        seed: 1,
    }];
    let err = train_two_layer(&model, &replicas, &data, &config, &device, |_| {}).unwrap_err();
    assert!(
        err.to_string().starts_with("train.engine = \"host\""),
        "{err}"
    );
}
