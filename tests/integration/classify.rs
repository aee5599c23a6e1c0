//! Image-classifier training on the generic trainer: it learns an easy problem, a checkpointed
//! and resumed run ends bit-identical to an uninterrupted one, DP-SGD without clipping or noise
//! is minibatch SGD, and Burn's cross-entropy smooths labels as the configs document.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use gaussmask_nn::image::{Architecture, ImageModelConfig};
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{MaskConfig, MaskResample, Replica};
use gaussmask_privacy::lira::member_halves;
use gaussmask_privacy::lira::{lira, logit_confidence, null_auc_se, tpr_at_fpr};
use gaussmask_train::classify::{
    ClassifierReplicas, ClassifierSpec, ClassifyConfig, DpSgd, ImageData, Parameters, accuracy,
    log_posteriors, parameters, posteriors, train_classifier,
};
use gaussmask_train::fit::{
    Optimizer, Schedule, Trainable, batch, flat_gradients, per_sample_clipped_sum,
};

use crate::device64;

/// `n` 1×6×6 images of 3 classes: class k brightens row block k, plus N(0, 0.5²) noise.
pub fn toy_images(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut s = Stream::new(seed, tag::DATA);
    let mut x = Vec::with_capacity(n * 36);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 3) as u8;
        labels.push(k);
        for p in 0..36 {
            let on = (p / 12) as u8 == k;
            x.push((if on { 1.0 } else { 0.0 } + 0.5 * s.normal()) as f32);
        }
    }
    (x, labels)
}

fn configs(architecture: Architecture) -> (ImageModelConfig, ClassifyConfig) {
    let model = ImageModelConfig {
        architecture,
        hidden: vec![16],
        channels: vec![4],
        kernel: 3,
        dropout: 0.1,
        ..ImageModelConfig::default()
    };
    let train = ClassifyConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.01,
        optimizer: Optimizer::AdamW,
        weight_decay: 1e-3,
        schedule: Schedule::Cosine,
        label_smoothing: 0.1,
        dp: None,
    };
    (model, train)
}

fn toy_data<'a>(x: &'a [f32], labels: &'a [u8]) -> ImageData<'a> {
    ImageData {
        x,
        labels,
        shape: [1, 6, 6],
        classes: 3,
    }
}

/// The autodiff device of the resume tests: f32 (Burn restores optimizer state in the default
/// device's float type), on wgpu, with the lock of the tests that train there.
fn wgpu_f32() -> (std::sync::MutexGuard<'static, ()>, Device) {
    let (lock, device) = crate::engines::wgpu_training();
    (lock, device.autodiff())
}

#[test]
fn a_resumed_run_ends_identical_to_an_uninterrupted_one() {
    let (_draws, device) = wgpu_f32();
    let (x, labels) = toy_images(100, 1);
    let data = toy_data(&x, &labels).dataset();
    let dp = ClassifyConfig {
        optimizer: Optimizer::Gd,
        dp: Some(DpSgd {
            clip: 0.5,
            noise_multiplier: 0.8,
        }),
        ..configs(Architecture::Mlp).1
    };
    // Batch norm, dropout, AdamW and a cosine schedule (MLP and CNN); DP-SGD's noise (MLP).
    for (architecture, train) in [
        (Architecture::Mlp, configs(Architecture::Mlp).1),
        (Architecture::Cnn, configs(Architecture::Cnn).1),
        (Architecture::Mlp, dp),
    ] {
        let model = configs(architecture).0;
        let spec = ClassifierSpec {
            model: &model,
            train: &train,
            kappa: 0.5,
            seed: 7,
        };
        let fresh = || spec.init([1, 6, 6], 3, &device);
        let mut whole = spec.fit(fresh(), &data, &device).unwrap();
        let total = whole.steps();
        let mut losses = Vec::new();
        while whole.step() < total {
            losses.push(whole.advance().unwrap().loss[0]);
        }
        // A step past the end is its own error, not a config error.
        assert!(matches!(
            whole.advance(),
            Err(gaussmask_train::TrainError::Finished { steps }) if steps == total
        ));
        // Stop in the middle of the second epoch (6 steps per epoch), save, restore, go on.
        let mut first = spec.fit(fresh(), &data, &device).unwrap();
        for _ in 0..10 {
            first.advance().unwrap();
        }
        let saved = first.checkpoint().unwrap();
        drop(first);
        let other = ClassifierSpec { seed: 99, ..spec };
        let mut resumed = spec
            .resume(other.init([1, 6, 6], 3, &device), &saved, &data, &device)
            .unwrap();
        let mut after = Vec::new();
        while resumed.step() < total {
            after.push(resumed.advance().unwrap().loss[0]);
        }
        assert_eq!(
            after,
            losses[10..],
            "{architecture}: losses after the resume"
        );
        // Weights and batch-norm statistics, and the mask streams that come next.
        let (a, b) = (resumed.model(), whole.model());
        assert!(
            parameters(a) == parameters(b),
            "{architecture}: resumed run differs"
        );
        assert_eq!(a.mask.noise_state(), b.mask.noise_state());
    }
}

#[test]
fn the_cnn_trains_the_same_through_gaussmask_cpu_ops_as_through_burns_layers() {
    // f64 flex autodiff: the conv, batch-norm and relu + max-pool layers through
    // gaussmask-cpu-ops, against the same model through burn::nn's forward, same masks, 54 Adam
    // steps (no dropout: its draws come from the device, not the model).
    let device = device64().autodiff();
    let (x, labels) = toy_images(100, 4);
    let data = toy_data(&x, &labels).dataset();
    let model = ImageModelConfig {
        channels: vec![4, 3],
        dropout: 0.0,
        ..configs(Architecture::Cnn).0
    };
    let train = ClassifyConfig {
        epochs: 9,
        optimizer: Optimizer::Adam,
        ..configs(Architecture::Cnn).1
    };
    let spec = ClassifierSpec {
        model: &model,
        train: &train,
        kappa: 0.5,
        seed: 3,
    };
    let run = |cpu_ops: bool| {
        let net = spec.init([1, 6, 6], 3, &device).with_cpu_ops(cpu_ops);
        let mut fit = spec.fit(net, &data, &device).unwrap();
        let mut losses = Vec::new();
        while fit.step() < fit.steps() {
            losses.push(fit.advance().unwrap().loss[0]);
        }
        (losses, parameters(fit.model()))
    };
    let ((fast_losses, fast), (plain_losses, plain)) = (run(true), run(false));
    assert!(fast_losses.len() >= 50, "{} steps", fast_losses.len());
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    for (i, (a, b)) in fast_losses.iter().zip(&plain_losses).enumerate() {
        assert!(rel(*a, *b) < 1e-5, "loss at step {i}: {a} vs {b}");
    }
    // Every weight, bias and batch-norm statistic after the last step.
    let flat = |p: Parameters| -> Vec<f64> { p.into_iter().flat_map(|(_, v)| v).collect() };
    let (fast, plain) = (flat(fast), flat(plain));
    assert_eq!(fast.len(), plain.len());
    let worst = fast
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = plain.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(
        worst < 1e-5 * scale,
        "parameters differ by {worst} (largest {scale})"
    );
    // Different code ran (its sums go in another order, so f64 results differ in the last
    // bits), and the model trained.
    assert!(fast != plain, "the two paths gave bit-identical weights");
    assert!(rel(fast_losses[0], *fast_losses.last().unwrap()) > 1e-3);
}

#[test]
fn the_classifiers_learn_an_easy_problem_and_keep_test_accuracy_under_a_mild_mask() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(150, 2);
    let (tx, tlabels) = toy_images(90, 3);
    let data = toy_data(&x, &labels).dataset();
    let test = toy_data(&tx, &tlabels);
    for architecture in [Architecture::Mlp, Architecture::Cnn] {
        let (model, train) = configs(architecture);
        for kappa in [0.0, 0.3] {
            let spec = ClassifierSpec {
                model: &model,
                train: &train,
                kappa,
                seed: 0,
            };
            let start = spec.init([1, 6, 6], 3, &device);
            let net = train_classifier(spec, start, &data, &device, || {}).unwrap();
            let p = posteriors(&net.valid(), test, 32, &device64());
            let acc = accuracy(&p, &tlabels, 3);
            // Chance is 1/3; the classes differ by a whole row block at noise σ = 0.5.
            assert!(acc > 0.9, "{architecture} κ = {kappa}: test accuracy {acc}");
        }
    }
}

#[test]
fn dp_sgd_sampling_every_row_without_clipping_or_noise_is_full_batch_gd() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(64, 4);
    let data = toy_data(&x, &labels).dataset();
    let model = ImageModelConfig {
        dropout: 0.0,
        ..configs(Architecture::Mlp).0
    };
    // Poisson sampling at q = 1 draws every row, and the sum over the expected batch n is
    // the full-batch mean.
    let sgd = ClassifyConfig {
        epochs: 8,
        batch_size: data.n,
        optimizer: Optimizer::Gd,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        ..configs(Architecture::Mlp).1
    };
    let dp = ClassifyConfig {
        dp: Some(DpSgd {
            clip: 1e9,
            noise_multiplier: 0.0,
        }),
        ..sgd.clone()
    };
    let trained = |train: &ClassifyConfig| {
        let spec = ClassifierSpec {
            model: &model,
            train,
            kappa: 0.0,
            seed: 3,
        };
        let start = spec.init([1, 6, 6], 3, &device);
        parameters(&train_classifier(spec, start, &data, &device, || {}).unwrap())
    };
    let (plain, private) = (trained(&sgd), trained(&dp));
    let start = parameters(&model.init([1, 6, 6], 3, 0.0, 3, &device64()));
    for ((p, q), s) in plain.iter().zip(&private).zip(&start) {
        let moved =
            p.1.iter()
                .zip(&s.1)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
        assert!(moved > 1e-4, "the parameters moved");
        for (a, b) in p.1.iter().zip(&q.1) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
    // Clipping to C bounds every step's update by lr · C (σ = 0): one step from the start.
    let clipped = ClassifyConfig {
        epochs: 1,
        batch_size: 64,
        dp: Some(DpSgd {
            clip: 1e-3,
            noise_multiplier: 0.0,
        }),
        ..sgd.clone()
    };
    let after = trained(&clipped);
    let step: f64 = after
        .iter()
        .zip(&start)
        .flat_map(|(a, s)| a.1.iter().zip(&s.1).map(|(x, y)| (x - y).powi(2)))
        .sum::<f64>()
        .sqrt();
    assert!(
        step > 0.0 && step <= clipped.lr * 1e-3 * (1.0 + 1e-9),
        "{step}"
    );
}

/// Asserts that `net`'s one-pass clipped gradient sum of `rows` is the per-sample loop's, for
/// every sample clipped, some and none, and that the clip acts; `params` tensors expected.
fn assert_one_pass_is_the_loop<M: Trainable>(
    net: &M,
    data: &gaussmask_data::Dataset,
    rows: &[usize],
    params: usize,
    what: &str,
) {
    let device = device64().autodiff();
    let b = batch(data, rows, &device);
    let mut sums = Vec::new();
    for clip in [1e-3, 0.4, 1e9] {
        let (want, want_loss) = per_sample_clipped_sum(net, data, rows, clip, &device);
        let (loss, grads) = net
            .clipped_gradient_sum(&b, clip)
            .unwrap_or_else(|| panic!("{what}: no one-pass sum"));
        let got = flat_gradients(net, &grads);
        assert_eq!(got.len(), want.len(), "{what}: a gradient per parameter");
        assert_eq!(
            got.len(),
            params,
            "{what}: weights and biases of every layer"
        );
        let close = |a: Tensor<1>, b: Tensor<1>| {
            for (a, b) in to_f64(a).iter().zip(to_f64(b)) {
                assert!(
                    (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                    "{what}, clip {clip}: {a} vs {b}"
                );
            }
        };
        for ((id, g), (want_id, w)) in got.iter().zip(&want) {
            assert_eq!(id, want_id, "{what}: visiting order");
            close(g.clone(), w.clone());
        }
        close(loss, want_loss.expect("rows were given"));
        sums.push(to_f64(got[0].1.clone()));
    }
    // The clip acts: the three sums differ, and at C = 10⁻³ the sum of the clipped gradients
    // has norm ≤ rows·C.
    assert!(sums[0] != sums[1] && sums[1] != sums[2], "{what}");
    let norm = sums[0].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        norm <= rows.len() as f64 * 1e-3 * (1.0 + 1e-9),
        "{what}: {norm}"
    );
}

#[test]
fn dp_sgd_s_one_pass_clipped_sum_is_what_a_backward_pass_per_sample_gives() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(24, 9);
    let data = toy_data(&x, &labels).dataset();
    let rows = [0, 3, 4, 7, 11, 12, 18, 23];
    let mlp = ImageModelConfig {
        hidden: vec![7, 5],
        ..configs(Architecture::Mlp).0
    };
    let cnn = ImageModelConfig {
        channels: vec![3, 2],
        ..configs(Architecture::Cnn).0
    };
    for (mut model, params) in [(mlp, 2 * 3), (cnn, 2 * 2 + 2 * 2)] {
        // Masks keyed by the row alone and no dropout, so a sample's draws are the same in its
        // own backward pass and in the batch's.
        model.dropout = 0.0;
        model.batch_norm = false;
        model.mask = model
            .mask
            .with_resample(gaussmask_nn::MaskResample::FixedPerSample);
        let net = model
            .init([1, 6, 6], 3, 0.8, 5, &device)
            .with_label_smoothing(0.1);
        let what = format!("{:?}", model.architecture);
        assert_one_pass_is_the_loop(&net, &data, &rows, params, &what);
        // Burn's own layers: per-sample conv gradients from shifted copies.
        let net = net.with_cpu_ops(false);
        assert_one_pass_is_the_loop(&net, &data, &rows, params, &format!("{what}, Burn's"));
    }
    // `gaussmask train`'s regression MLP: the squared error's sum.
    let model: gaussmask_supervised::config::ModelConfig = toml::from_str(
        "kind = \"mlp\"\nhidden = [6, 4]\ndropout = 0.0\n[mask]\nresample = \"fixed-per-sample\"\n",
    )
    .unwrap();
    let dims = gaussmask_supervised::network::Dims {
        shape: [1, 1, 36],
        outputs: 1,
    };
    let task = gaussmask_supervised::config::Task::Regression;
    let net =
        gaussmask_supervised::network::Network::init(&model, dims, task, 0.8, 5, 0.0, &device);
    let targets = gaussmask_data::Dataset {
        y: (0..data.n).map(|i| (i as f64 * 0.7).sin()).collect(),
        ..data.clone()
    };
    assert_one_pass_is_the_loop(&net, &targets, &rows, 2 * 3, "regression MLP");
    // Batch norm couples the samples: that CNN takes the per-sample loop.
    let with_norm = ImageModelConfig {
        batch_norm: true,
        ..configs(Architecture::Cnn).0
    };
    let net = with_norm.init([1, 6, 6], 3, 0.8, 5, &device);
    assert!(
        net.clipped_gradient_sum(&batch(&data, &rows, &device), 1.0)
            .is_none()
    );
}

#[test]
fn burns_cross_entropy_smooths_labels_as_documented() {
    let device: Device = device64();
    // logits (0, ln 3) → softmax (1/4, 3/4); label 1, ε = 0.2 over K = 2: targets (0.1, 0.9).
    let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0, 3f64.ln()], [1, 2]), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &device);
    let loss = CrossEntropyLossConfig::new()
        .with_smoothing(Some(0.2))
        .init(&device)
        .forward(logits, targets);
    let loss = to_f64(loss)[0];
    let hand = -(0.1 * 0.25f64.ln() + 0.9 * 0.75f64.ln());
    // ε passes through f32 in Burn's config.
    assert!((loss - hand).abs() < 1e-7, "{loss} vs {hand}");
}

/// Members and non-members of a model trained for `epochs` on `n` toy images with random
/// labels (only memorization fits them), as attack features.
fn memorizer_features(seed: u64, n: usize, epochs: usize) -> gaussmask_privacy::MembershipFeatures {
    let device = device64().autodiff();
    let (x, _) = toy_images(2 * n, seed);
    let mut s = Stream::new(seed, tag::TEACHER);
    let labels: Vec<u8> = (0..2 * n).map(|_| s.below(3) as u8).collect();
    let dim = 36;
    let (model, mut train) = configs(Architecture::Mlp);
    let model = ImageModelConfig {
        hidden: vec![64],
        dropout: 0.0,
        ..model
    };
    train.epochs = epochs;
    train.label_smoothing = 0.0;
    train.weight_decay = 0.0;
    let members = ImageData {
        x: &x[..n * dim],
        labels: &labels[..n],
        shape: [1, 6, 6],
        classes: 3,
    };
    let others = ImageData {
        x: &x[n * dim..],
        labels: &labels[n..],
        ..members
    };
    let spec = ClassifierSpec {
        model: &model,
        train: &train,
        kappa: 0.0,
        seed,
    };
    let start = spec.init([1, 6, 6], 3, &device);
    let net = train_classifier(spec, start, &members.dataset(), &device, || {})
        .unwrap()
        .valid();
    let top = |data| gaussmask_privacy::top_sorted(&posteriors(&net, data, 64, &device64()), 3);
    gaussmask_privacy::MembershipFeatures {
        members: top(members),
        non_members: top(others),
    }
}

#[test]
fn the_attack_finds_an_overfit_target_and_not_a_random_membership_control() {
    // Target and shadow memorize 60 random-labelled images each (300 epochs of Adam).
    let shadow = memorizer_features(11, 60, 300);
    let target = memorizer_features(12, 60, 300);
    let m = gaussmask_privacy::attack(&shadow, &target).unwrap();
    assert!(m.auc > 0.8, "overfit target: {m:?}");
    // Control: the target's rows with membership assigned at random. Under no signal the AUC
    // of 60 vs 60 has standard error √((n₊ + n₋ + 1)/(12 n₊ n₋)) = 0.053; allow 4 of them.
    let mut rows: Vec<[f64; 3]> = target
        .members
        .iter()
        .chain(&target.non_members)
        .copied()
        .collect();
    Stream::new(5, tag::BATCH).shuffle(&mut rows);
    let control = gaussmask_privacy::MembershipFeatures {
        members: rows[..60].to_vec(),
        non_members: rows[60..].to_vec(),
    };
    let c = gaussmask_privacy::attack(&shadow, &control).unwrap();
    assert!(
        (c.auc - 0.5).abs() < 4.0 * 0.053,
        "random-membership control: {c:?}"
    );
}

#[test]
fn lira_finds_the_members_of_models_that_memorize_random_labels_and_no_others() {
    // 8 MLPs, each trained on a seeded half of 120 noise images with random labels: to fit
    // them a model must memorize its members, so φ of a member sits far above φ of the same
    // image on a model that never saw it.
    let device = device64().autodiff();
    let (n, models) = (120usize, 8usize);
    let mut s = Stream::new(21, tag::DATA);
    let x: Vec<f32> = (0..n * 36).map(|_| s.normal() as f32).collect();
    let labels: Vec<u8> = (0..n).map(|_| s.below(3) as u8).collect();
    let model = ImageModelConfig {
        hidden: vec![64],
        ..configs(Architecture::Mlp).0
    };
    let train = ClassifyConfig {
        epochs: 150,
        batch_size: 60,
        lr: 0.01,
        optimizer: Optimizer::Adam,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        label_smoothing: 0.0,
        dp: None,
    };
    let all = toy_data(&x, &labels);
    let mut phi = Vec::new();
    let mut member = Vec::new();
    for m in 0..models {
        let mut order: Vec<usize> = (0..n).collect();
        Stream::new(m as u64, tag::SPLIT).shuffle(&mut order);
        let rows = &order[..n / 2];
        let mx: Vec<f32> = rows
            .iter()
            .flat_map(|&i| x[i * 36..(i + 1) * 36].iter().copied())
            .collect();
        let ml: Vec<u8> = rows.iter().map(|&i| labels[i]).collect();
        let spec = ClassifierSpec {
            model: &model,
            train: &train,
            kappa: 0.0,
            seed: m as u64,
        };
        let start = spec.init([1, 6, 6], 3, &device);
        let net =
            train_classifier(spec, start, &toy_data(&mx, &ml).dataset(), &device, || {}).unwrap();
        let log_p = log_posteriors(&net.valid(), all, 60, &device64());
        phi.push(
            log_p
                .chunks_exact(3)
                .zip(&labels)
                .map(|(row, &y)| logit_confidence(row, y as usize))
                .collect::<Vec<f64>>(),
        );
        let mut is = vec![false; n];
        for &i in rows {
            is[i] = true;
        }
        member.push(is);
    }
    let scores = lira(&phi, &member);
    let found = tpr_at_fpr(&scores.online, &scores.member, 0.01);
    assert!(found.low > 0.2, "TPR at 1% FPR {found:?}");
    // The same attack on a membership the models never had (each model's half flipped at
    // random) finds nothing: AUC within 4 standard errors of 0.5.
    let mut fake = Stream::new(99, tag::SPLIT);
    let decoy: Vec<Vec<bool>> = member
        .iter()
        .map(|row| row.iter().map(|_| fake.uniform() < 0.5).collect())
        .collect();
    let chance = lira(&phi, &decoy);
    let pos = chance.member.iter().filter(|&&m| m).count();
    let se = null_auc_se(pos, chance.member.len() - pos);
    let auc = gaussmask_privacy::roc_auc(&chance.online, &chance.member);
    assert!((auc - 0.5).abs() < 4.0 * se, "AUC {auc}, SE {se}");
}

/// Three MLPs (κ 0, 0.5, 1.5) as replicas, each on its own seeded half of 80 toy images.
fn replica_setup<'a>(
    model: &'a ImageModelConfig,
    train: &'a ClassifyConfig,
) -> ClassifierReplicas<'a> {
    assert_eq!(model.architecture, Architecture::Mlp);
    ClassifierReplicas {
        model,
        train,
        replicas: [(0.0, 3), (0.5, 4), (1.5, 5)]
            .map(|(kappa, seed)| Replica { kappa, seed })
            .to_vec(),
        rows: (0..3)
            .map(|m| {
                let member = member_halves(80, 1, m);
                (0..80).filter(|&i| member[i]).collect()
            })
            .collect(),
    }
}

#[test]
fn replicas_on_rows_of_their_own_train_as_each_classifier_alone() {
    // f64 flex: three MLPs (κ 0, 0.5, 1.5) as one batched model, each on its own 40 of 80
    // images, against each trained alone on its 40 (Adam, label smoothing; no dropout, whose
    // draws come from the device), with fresh and with fixed-per-sample masks.
    let device = device64().autodiff();
    let (x, labels) = toy_images(80, 2);
    let images = toy_data(&x, &labels);
    let data = images.dataset();
    for resample in [MaskResample::Fresh, MaskResample::FixedPerSample] {
        let model = ImageModelConfig {
            dropout: 0.0,
            mask: MaskConfig::default().with_resample(resample),
            ..configs(Architecture::Mlp).0
        };
        let train = ClassifyConfig {
            optimizer: Optimizer::Adam,
            ..configs(Architecture::Mlp).1
        };
        let batched = replica_setup(&model, &train);
        let mut run = batched
            .fit(batched.init([1, 6, 6], 3, &device), &data, &device)
            .unwrap();
        let mut losses = Vec::new();
        while run.step() < run.steps() {
            losses.push(run.advance().unwrap().loss);
        }
        // 2 steps an epoch (batch 16 of 40), 3 epochs: reshuffles and leftovers included.
        assert_eq!(losses.len(), 6);
        let together = run.into_model();
        for (r, own) in batched.rows.iter().enumerate() {
            let x: Vec<f32> = own
                .iter()
                .flat_map(|&i| x[i * 36..(i + 1) * 36].to_vec())
                .collect();
            let labels: Vec<u8> = own.iter().map(|&i| labels[i]).collect();
            let alone = toy_data(&x, &labels).dataset();
            let spec = batched.spec(r);
            let mut single = spec
                .fit(spec.init([1, 6, 6], 3, &device), &alone, &device)
                .unwrap();
            for (k, step) in losses.iter().enumerate() {
                let loss = single.advance().unwrap().loss[0];
                let diff = (step[r] - loss).abs();
                assert!(
                    diff < 1e-12,
                    "{resample:?} replica {r} step {k}: {} vs {loss}",
                    step[r]
                );
            }
            let (a, b) = (parameters(&together.replica(r)), parameters(single.model()));
            assert_eq!(a.len(), b.len());
            for ((sa, va), (sb, vb)) in a.iter().zip(&b) {
                assert_eq!(sa, sb);
                let worst = va
                    .iter()
                    .zip(vb)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-10,
                    "{resample:?} replica {r}: weights differ by {worst}"
                );
            }
            let moved = a
                .iter()
                .zip(&parameters(&spec.init([1, 6, 6], 3, &device)))
                .any(|((_, p), (_, q))| p != q);
            assert!(moved, "replica {r} did not train");
            assert_eq!(
                together.replica(r).mask.noise_state(),
                single.model().mask.noise_state()
            );
        }
    }
}

#[test]
fn replicas_refuse_dp_sgd_and_rows_they_cannot_batch() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(80, 2);
    let data = toy_data(&x, &labels).dataset();
    let (model, train) = configs(Architecture::Mlp);
    let base = replica_setup(&model, &train);
    let rows = &base.rows;
    let dp = ClassifyConfig {
        dp: Some(DpSgd {
            clip: 1.0,
            noise_multiplier: 1.0,
        }),
        ..train.clone()
    };
    let mut uneven = rows.clone();
    uneven[1].pop();
    let mut outside = rows.clone();
    outside[2][0] = 80;
    let cases = [
        (&dp, rows.clone(), "train.dp"),
        (&train, uneven, "same number of rows"),
        (&train, outside, "row 80 of a dataset of 80 rows"),
        (&train, rows[..2].to_vec(), "2 sets for 3 replicas"),
    ];
    for (train, rows, expected) in cases {
        let batched = ClassifierReplicas {
            train,
            rows,
            ..base.clone()
        };
        let err = batched
            .fit(batched.init([1, 6, 6], 3, &device), &data, &device)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    // A model without replicas on rows of their own would take the R blocks for one batch.
    let spec = ClassifierSpec {
        model: &model,
        train: &train,
        kappa: 0.5,
        seed: 1,
    };
    let own = rows.iter().map(|r| (r.clone(), 0)).collect();
    let err = spec
        .fit(spec.init([1, 6, 6], 3, &device), &data, &device)
        .unwrap()
        .with_replica_rows(own)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("does not train replicas on rows of their own"),
        "{err}"
    );
}

#[test]
fn resumed_replicas_end_identical_to_an_uninterrupted_run() {
    // Dropout, AdamW and a cosine schedule, as the single classifier's resume test.
    let (_draws, device) = wgpu_f32();
    let (x, labels) = toy_images(80, 2);
    let data = toy_data(&x, &labels).dataset();
    let (model, train) = configs(Architecture::Mlp);
    let batched = replica_setup(&model, &train);
    let fresh = || batched.init([1, 6, 6], 3, &device);
    let mut whole = batched.fit(fresh(), &data, &device).unwrap();
    let mut losses = Vec::new();
    while whole.step() < whole.steps() {
        losses.push(whole.advance().unwrap().loss);
    }
    // Stop in the second epoch's second step, save, restore into other weights, go on.
    let mut first = batched.fit(fresh(), &data, &device).unwrap();
    for _ in 0..3 {
        first.advance().unwrap();
    }
    let saved = first.checkpoint().unwrap();
    drop(first);
    let other = ClassifierReplicas {
        replicas: batched
            .replicas
            .iter()
            .map(|r| Replica {
                seed: r.seed + 50,
                ..*r
            })
            .collect(),
        ..batched.clone()
    };
    let mut resumed = batched
        .resume(other.init([1, 6, 6], 3, &device), &saved, &data, &device)
        .unwrap();
    let mut after = Vec::new();
    while resumed.step() < resumed.steps() {
        after.push(resumed.advance().unwrap().loss);
    }
    assert_eq!(after, losses[3..]);
    assert!(parameters(resumed.model()) == parameters(whole.model()));
    assert_eq!(
        resumed.model().mask.noise_state(),
        whole.model().mask.noise_state()
    );
    // A single classifier's checkpoint is not one of these replicas'.
    let spec = batched.spec(0);
    let single = spec
        .fit(spec.init([1, 6, 6], 3, &device), &data, &device)
        .unwrap();
    let err = batched
        .resume(fresh(), &single.checkpoint().unwrap(), &data, &device)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("not a training checkpoint of this run"),
        "{err}"
    );
}
