//! Image-classifier training: it learns an easy problem, a checkpointed and resumed run ends
//! bit-identical to an uninterrupted one, and cross-entropy with label smoothing matches a
//! hand computation.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use gaussmask_nn::image::{Architecture, ImageModelConfig};
use gaussmask_nn::rng::{Stream, tag};
use gaussmask_train::classify::{
    ClassifierSpec, ClassifyConfig, ClassifyOptimizer, Flow, ImageData, Schedule, TrainState,
    accuracy, cross_entropy, posteriors, train_classifier,
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
        optimizer: ClassifyOptimizer::Adamw,
        weight_decay: 1e-3,
        schedule: Schedule::Cosine,
        label_smoothing: 0.1,
        dp: None,
    };
    (model, train)
}

#[test]
fn a_resumed_run_ends_identical_to_an_uninterrupted_one() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(100, 1);
    let data = ImageData {
        x: &x,
        labels: &labels,
        shape: [1, 6, 6],
        classes: 3,
    };
    for architecture in [Architecture::Mlp, Architecture::Cnn] {
        let (model, train) = configs(architecture);
        let spec = ClassifierSpec {
            model: &model,
            train: &train,
            kappa: 0.5,
            seed: 7,
        };
        let fresh = || TrainState::new(&model, [1, 6, 6], 3, 7, &device);
        let whole = train_classifier(spec, data, fresh(), &device, |_| Flow::Continue).unwrap();
        // Stop in the middle of the second epoch (7 steps per epoch), save, restore, go on.
        let mut saved = None;
        let stopped = train_classifier(spec, data, fresh(), &device, |info| {
            if info.state.step == 10 {
                saved = Some(info.state.to_bytes());
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
        assert_eq!(stopped.step, 10);
        let restored =
            TrainState::from_bytes(&saved.unwrap(), &model, [1, 6, 6], 3, &device).unwrap();
        let resumed = train_classifier(spec, data, restored, &device, |_| Flow::Continue).unwrap();
        assert_eq!(resumed.step, whole.step);
        // Whole checkpoints: weights, batch-norm statistics, moments, streams and step.
        assert!(
            resumed.to_bytes() == whole.to_bytes(),
            "{architecture}: resumed run differs"
        );
    }
}

#[test]
fn the_classifiers_learn_an_easy_problem_and_keep_test_accuracy_under_a_mild_mask() {
    let device = device64().autodiff();
    let (x, labels) = toy_images(150, 2);
    let (tx, tlabels) = toy_images(90, 3);
    let data = ImageData {
        x: &x,
        labels: &labels,
        shape: [1, 6, 6],
        classes: 3,
    };
    let test = ImageData {
        x: &tx,
        labels: &tlabels,
        ..data
    };
    for architecture in [Architecture::Mlp, Architecture::Cnn] {
        let (model, train) = configs(architecture);
        for kappa in [0.0, 0.3] {
            let spec = ClassifierSpec {
                model: &model,
                train: &train,
                kappa,
                seed: 0,
            };
            let state = TrainState::new(&model, [1, 6, 6], 3, 0, &device);
            let state = train_classifier(spec, data, state, &device, |_| Flow::Continue).unwrap();
            let net = state.model.valid();
            let p = posteriors(&net, &model, test, 32, &device64());
            let acc = accuracy(&p, &tlabels, 3);
            // Chance is 1/3; the classes differ by a whole row block at noise σ = 0.5.
            assert!(acc > 0.9, "{architecture} κ = {kappa}: test accuracy {acc}");
        }
    }
}

#[test]
fn cross_entropy_with_label_smoothing_matches_a_hand_computation() {
    let device: Device = device64();
    // logits (0, ln 3) → softmax (1/4, 3/4); label 1, ε = 0.2 over K = 2: targets (0.1, 0.9).
    let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0, 3f64.ln()], [1, 2]), &device);
    let loss = cross_entropy(logits, &[1], 0.2).into_scalar::<f64>();
    let hand = -(0.1 * 0.25f64.ln() + 0.9 * 0.75f64.ln());
    assert!((loss - hand).abs() < 1e-12, "{loss} vs {hand}");
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
    let state = TrainState::new(&model, [1, 6, 6], 3, seed, &device);
    let state = train_classifier(spec, members, state, &device, |_| Flow::Continue).unwrap();
    let net = state.model.valid();
    let top =
        |data| gaussmask_privacy::top_sorted(&posteriors(&net, &model, data, 64, &device64()), 3);
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
