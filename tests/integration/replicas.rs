//! A replica's trajectory does not depend on which other replicas share its batch.

use gaussmask_data::SyntheticConfig;
use gaussmask_nn::{Replica, TwoLayerReluConfig};
use gaussmask_train::{Engine, LogRecord, Objective, Optimizer, TrainConfig, train_two_layer};

use crate::device64;

fn train(replicas: &[Replica], config: &TrainConfig) -> Vec<LogRecord> {
    let data = SyntheticConfig::new(40, 6).generate();
    let model = TwoLayerReluConfig::new(6, 16);
    let mut logs = Vec::new();
    train_two_layer(&model, replicas, &data, config, &device64(), |r| {
        logs.push(r.clone())
    })
    .expect("training converges");
    logs
}

fn config(optimizer: Optimizer, batch_size: Option<usize>) -> TrainConfig {
    TrainConfig {
        steps: 30,
        lr: 0.05,
        lr_output: None,
        optimizer,
        momentum: 0.0,
        batch_size,
        objective: Objective::Masked,
        log_every: 1,
        masks_per_step: 1,
        exact_chunk: 7,
        shuffle_seed: 0,
        engine: Engine::Auto,
        diagnostics_every: 0,
    }
}

#[test]
fn replica_trajectory_is_identical_alone_and_in_a_batch() {
    let target = Replica {
        kappa: 0.6,
        seed: 2,
    };
    let batch = [
        Replica {
            kappa: 0.0,
            seed: 1,
        },
        target,
        Replica {
            kappa: 2.0,
            seed: 3,
        },
    ];
    for (optimizer, batch_size) in [
        (Optimizer::Gd, None),
        (Optimizer::Adam, None),
        (Optimizer::Gd, Some(8)),
    ] {
        let cfg = config(optimizer, batch_size);
        let together = train(&batch, &cfg);
        let alone = train(&[target], &cfg);
        assert_eq!(together.len(), alone.len());
        for (t, a) in together.iter().zip(&alone) {
            assert_eq!(t.step, a.step);
            assert_eq!(
                t.clean_loss[1], a.clean_loss[0],
                "{optimizer:?} step {}",
                t.step
            );
            assert_eq!(
                t.masked_loss[1], a.masked_loss[0],
                "{optimizer:?} step {}",
                t.step
            );
        }
        // The loss actually moved, so the comparison is not between two frozen runs.
        assert!(alone.last().unwrap().clean_loss[0] < 0.9 * alone[0].clean_loss[0]);
    }
}

#[test]
fn zero_kappa_masked_training_equals_clean_training() {
    let rep = [Replica {
        kappa: 0.0,
        seed: 4,
    }];
    let masked = train(&rep, &config(Optimizer::Gd, None));
    let mut clean_cfg = config(Optimizer::Gd, None);
    clean_cfg.objective = Objective::Clean;
    let clean = train(&rep, &clean_cfg);
    for (m, c) in masked.iter().zip(&clean) {
        assert_eq!(m.clean_loss, c.clean_loss);
    }
}

#[test]
fn every_objective_reduces_to_clean_training_at_zero_kappa() {
    let rep = [Replica {
        kappa: 0.0,
        seed: 4,
    }];
    let mut clean_cfg = config(Optimizer::Gd, None);
    clean_cfg.objective = Objective::Clean;
    let clean = train(&rep, &clean_cfg);
    for objective in [
        Objective::MaskedK,
        Objective::Proxy,
        Objective::ExpectedExact,
    ] {
        let mut cfg = config(Optimizer::Gd, None);
        cfg.objective = objective;
        cfg.masks_per_step = 3;
        let run = train(&rep, &cfg);
        for (r, c) in run.iter().zip(&clean) {
            // The proxy network sums its neurons in another order than the clean one.
            let rel = (r.clean_loss[0] - c.clean_loss[0]).abs() / c.clean_loss[0];
            assert!(rel < 1e-12, "{objective:?} step {}: {rel:e}", r.step);
        }
    }
}

#[test]
fn proxy_and_masked_k_objectives_train_with_mask_noise() {
    let rep = [Replica {
        kappa: 0.6,
        seed: 4,
    }];
    for objective in [
        Objective::MaskedK,
        Objective::Proxy,
        Objective::ExpectedExact,
    ] {
        let mut cfg = config(Optimizer::Gd, None);
        cfg.objective = objective;
        cfg.masks_per_step = 4;
        let run = train(&rep, &cfg);
        let (first, last) = (&run[0], run.last().unwrap());
        assert!(
            last.clean_loss[0] < 0.9 * first.clean_loss[0],
            "{objective:?}"
        );
        assert!(last.masked_loss[0] < first.masked_loss[0], "{objective:?}");
    }
}
