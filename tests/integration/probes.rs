//! The theory-probe experiments and their related systems: exact reductions to plain GD, and
//! smoke runs through the command line.

use gaussmask_data::SyntheticConfig;
use gaussmask_nn::tensor_io::to_f64;
use gaussmask_nn::{Replica, TwoLayerReluConfig};
use gaussmask_train::{Engine, Objective, Optimizer, TrainConfig, train_two_layer};
use masked_neurons::train::{Net, Scheme, Setting, train};

use crate::device64;

fn gd(steps: usize, lr: f64, engine: Engine) -> TrainConfig {
    TrainConfig {
        steps,
        lr,
        lr_output: None,
        optimizer: Optimizer::Gd,
        momentum: 0.0,
        batch_size: None,
        objective: Objective::Masked,
        log_every: 1,
        masks_per_step: 1,
        exact_chunk: 32,
        shuffle_seed: 0,
        engine,
        diagnostics_every: 0,
    }
}

#[test]
fn masked_neurons_with_every_neuron_kept_and_one_subnetwork_is_plain_gd() {
    let (n, d, m, steps, lr) = (40, 6, 12, 30, 0.05);
    let data = SyntheticConfig::new(n, d).generate();
    let model = TwoLayerReluConfig::new(d, m);
    let (w, a) = model.initial_weights(3);
    let mut net = Net { w, a };
    let setting = Setting {
        scheme: Scheme::Bernoulli,
        p: 1,
        tau_local: 1,
        xi: 1.0,
        kappa: 0.0,
        rounds: steps,
        lr,
    };
    let losses = train(&mut net, &data, &setting, 3);
    let mut reference = Vec::new();
    let trained = train_two_layer(
        &model,
        &[Replica {
            kappa: 0.0,
            seed: 3,
        }],
        &data,
        &gd(steps, lr, Engine::Autodiff),
        &device64(),
        |r| reference.push(r.clean_loss[0]),
    )
    .unwrap();
    let w_ref = to_f64(trained.w.val());
    let worst = net
        .w
        .iter()
        .zip(&w_ref)
        .map(|(p, q)| (p - q).abs() / q.abs().max(1e-3))
        .fold(0.0, f64::max);
    assert!(worst < 1e-12, "weights differ by {worst:e} (relative)");
    assert_eq!(losses.len(), reference.len());
    for (k, (ours, theirs)) in losses.iter().zip(&reference).enumerate() {
        assert!(
            (ours - theirs).abs() <= 1e-12 * theirs,
            "round {k}: {ours} vs {theirs}"
        );
    }
}

#[test]
fn ist_subnetworks_partition_the_neurons_and_unpicked_neurons_stay() {
    // IST with p = m: each subnetwork holds exactly one neuron, so every neuron is updated by
    // exactly one subnetwork; with lr = 0 nothing moves.
    let data = SyntheticConfig::new(10, 3).generate();
    let model = TwoLayerReluConfig::new(3, 4);
    let (w, a) = model.initial_weights(1);
    let start = Net { w, a };
    let mut net = start.clone();
    let setting = Setting {
        scheme: Scheme::Ist,
        p: 4,
        tau_local: 2,
        xi: 0.25,
        kappa: 0.5,
        rounds: 3,
        lr: 0.0,
    };
    train(&mut net, &data, &setting, 1);
    assert_eq!(net, start);
    // Bernoulli with ξ → 0 picks (almost) nobody: the weights stay where they were.
    let mut net = start.clone();
    let setting = Setting {
        scheme: Scheme::Bernoulli,
        xi: 1e-300,
        lr: 0.1,
        ..setting
    };
    train(&mut net, &data, &setting, 1);
    assert_eq!(net, start);
}

#[test]
fn two_rates_with_rho_zero_is_the_first_layer_only_update() {
    let (n, d, m) = (48, 5, 16);
    let data = SyntheticConfig::new(n, d).generate();
    let replicas = [
        Replica {
            kappa: 0.0,
            seed: 1,
        },
        Replica {
            kappa: 0.4,
            seed: 2,
        },
    ];
    for engine in [Engine::Autodiff, Engine::Host] {
        let first_only = TwoLayerReluConfig::new(d, m);
        let mut both = first_only.clone();
        both.train_output = true;
        let mut rho_zero = gd(40, 0.02, engine);
        rho_zero.lr_output = Some(0.0);
        let run = |model: &TwoLayerReluConfig, config: &TrainConfig| {
            let t = train_two_layer(model, &replicas, &data, config, &device64(), |_| {}).unwrap();
            (to_f64(t.w.val()), to_f64(t.a.val()))
        };
        let (w1, a1) = run(&first_only, &gd(40, 0.02, engine));
        let (w2, a2) = run(&both, &rho_zero);
        assert_eq!(w1, w2, "{engine}: W differs");
        assert_eq!(a1, a2, "{engine}: a moved");
        // And ρ > 0 does move a (the check above can fail).
        let mut rho_one = gd(40, 0.02, engine);
        rho_one.lr_output = Some(0.02);
        let (_, a3) = run(&both, &rho_one);
        assert_ne!(a1, a3, "{engine}: ρ = 1 left a in place");
    }
}

#[test]
fn a_depth_two_mlp_trains_exactly_like_the_two_layer_network() {
    let (n, d, m) = (40, 6, 12);
    let data = SyntheticConfig::new(n, d).generate();
    let model = TwoLayerReluConfig::new(d, m);
    let replicas = [
        Replica {
            kappa: 0.0,
            seed: 1,
        },
        Replica {
            kappa: 0.5,
            seed: 2,
        },
    ];
    let config = gd(25, 0.03, Engine::Autodiff);
    let (mut deep_log, mut flat_log) = (Vec::new(), Vec::new());
    let deep =
        gaussmask_train::train_deep(&model, 2, &replicas, &data, &config, &device64(), |r| {
            deep_log.push(r.clean_loss.clone())
        })
        .unwrap();
    let flat = train_two_layer(&model, &replicas, &data, &config, &device64(), |r| {
        flat_log.push(r.clean_loss.clone())
    })
    .unwrap();
    // DeepRelu stores W_1ᵀ.
    let wd = to_f64(deep.layers[0].val().swap_dims(1, 2));
    let wf = to_f64(flat.w.val());
    let worst = wd
        .iter()
        .zip(&wf)
        .map(|(p, q)| (p - q).abs() / q.abs().max(1e-3))
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-12,
        "same masks, same GD: weights differ by {worst:e}"
    );
    // The logged losses agree as well, step by step and replica by replica.
    let rel = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(p, q)| (p - q).abs() / q.abs().max(1e-12))
            .fold(0.0, f64::max)
    };
    let worst = rel(&deep_log, &flat_log);
    assert!(worst < 1e-12, "logged losses differ by {worst:e}");
    // Depth 3 is a different network: its losses differ (so the comparison above can fail).
    let mut deeper_log = Vec::new();
    let deeper =
        gaussmask_train::train_deep(&model, 3, &replicas, &data, &config, &device64(), |r| {
            deeper_log.push(r.clean_loss.clone())
        })
        .unwrap();
    assert_eq!(deeper.depth(), 3);
    assert_eq!(deeper.layers[1].val().dims(), [2, m, m]);
    let apart = rel(&deeper_log, &flat_log);
    assert!(
        apart > 1e-3,
        "depth 3 logged the depth-2 losses (worst {apart:e})"
    );
}

/// Logged (clean, masked) losses of every replica at every step.
type Losses = Vec<(usize, Vec<f64>, Vec<f64>)>;

#[test]
fn deep_replica_groups_on_threads_log_what_one_batch_logs_bit_for_bit() {
    let (n, d, m) = (30, 5, 10);
    let data = SyntheticConfig::new(n, d).generate();
    let model = TwoLayerReluConfig::new(d, m);
    let replicas: Vec<Replica> = [0.0, 0.3, 0.6, 1.0, 0.3]
        .iter()
        .zip(1..)
        .map(|(&kappa, seed)| Replica { kappa, seed })
        .collect();
    let mut config = gd(50, 0.01, Engine::Autodiff);
    config.batch_size = Some(16);
    for device in [device64(), burn::tensor::Device::flex()] {
        let run = |groups: Option<usize>| -> Losses {
            let mut log = Vec::new();
            let keep = |r: &gaussmask_train::LogRecord| {
                log.push((r.step, r.clean_loss.clone(), r.masked_loss.clone()))
            };
            match groups {
                None => {
                    gaussmask_train::train_deep(&model, 3, &replicas, &data, &config, &device, keep)
                        .map(|_| ())
                }
                Some(g) => gaussmask_train::train_deep_grouped(
                    &model, 3, &replicas, &data, &config, &device, g, keep,
                ),
            }
            .unwrap();
            log
        };
        let one_batch = run(None);
        assert_eq!(one_batch.len(), 51);
        assert!(one_batch[50].1 != one_batch[0].1, "training moved nothing");
        for groups in [1, 2, 3, 5, 9] {
            assert_eq!(run(Some(groups)), one_batch, "{groups} groups");
        }
    }
}

#[test]
fn a_diverged_replica_in_a_group_is_named_by_its_index_in_the_sweep() {
    let (n, d, m) = (30, 5, 10);
    let data = SyntheticConfig::new(n, d).generate();
    let model = TwoLayerReluConfig::new(d, m);
    let config = gd(10, 0.01, Engine::Autodiff);
    // The largest κ accepted: its replica's masked gradients (~κ²) overflow f32 within the
    // 10 steps.
    let huge = gaussmask_nn::KAPPA_MAX;
    for (kappas, expected) in [
        ([0.5, 0.5, 0.5, huge], 3),  // in the second group
        ([0.5, huge, 0.5, huge], 1), // in both: the lowest replica, as one batch says
    ] {
        let replicas: Vec<Replica> = kappas
            .iter()
            .zip(1..)
            .map(|(&kappa, seed)| Replica { kappa, seed })
            .collect();
        let device = burn::tensor::Device::flex();
        let batch =
            gaussmask_train::train_deep(&model, 3, &replicas, &data, &config, &device, |_| {})
                .map(|_| ());
        let grouped = gaussmask_train::train_deep_grouped(
            &model,
            3,
            &replicas,
            &data,
            &config,
            &device,
            2,
            |_| {},
        );
        assert!(
            matches!(batch, Err(gaussmask_train::TrainError::Diverged { replica, .. }) if replica == expected),
            "{kappas:?}: {batch:?}"
        );
        // Compared as text: the value seen is NaN, which equals nothing.
        assert_eq!(format!("{grouped:?}"), format!("{batch:?}"), "{kappas:?}");
    }
}
