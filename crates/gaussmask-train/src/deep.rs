//! Masked GD on ReLU MLPs of any depth ([`gaussmask_nn::DeepRelu`]) through the generic loop
//! [`crate::fit::fit`], logged like the two-layer engines.

use gaussmask_core::InputError;
use std::collections::VecDeque;
use std::sync::mpsc;

use burn::module::Module;
use burn::tensor::Device;
use gaussmask_data::Dataset;
use gaussmask_nn::{DeepRelu, MaskNoise, Replica, TwoLayerReluConfig, deep_init, half_sse};

use crate::fit::{FitConfig, fit};
use crate::{LogRecord, Objective, TrainConfig, TrainError, check_finite, tensor_io};

/// Checks that `config` is one [`train_deep`] runs: objective masked or clean, and the output
/// signs frozen. The error names the field.
pub fn check_deep(model: &TwoLayerReluConfig, config: &TrainConfig) -> Result<(), InputError> {
    if !matches!(config.objective, Objective::Masked | Objective::Clean) {
        return Err(format!(
            "train.objective = {:?} is not available for deep networks (masked or clean)",
            config.objective
        )
        .into());
    }
    if model.train_output {
        return Err("model.train_output must be false for deep networks".into());
    }
    Ok(())
}

/// Trains R replicas of a depth-`depth` MLP with `config`'s optimizer, batches and objective,
/// and the same masks (per replica seed) as [`crate::train_two_layer`]; `log` gets each logged
/// step's losses (no weights).
///
/// # Errors
/// [`TrainError::Diverged`] when a loss becomes NaN or infinite.
pub fn train_deep(
    model_config: &TwoLayerReluConfig,
    depth: usize,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&LogRecord),
) -> Result<DeepRelu, TrainError> {
    let device = device.clone().autodiff();
    // The clean objective is the masked one with the identity mask (κ = 0 draws nothing).
    let clean: Vec<Replica> = replicas
        .iter()
        .map(|r| Replica { kappa: 0.0, ..*r })
        .collect();
    let masked = config.objective != Objective::Clean;
    let model = deep_init(
        model_config,
        depth,
        if masked { replicas } else { &clean },
        &device,
    );
    let fit_config = FitConfig {
        steps: config.steps,
        batch_size: config.batch_size,
        lr: config.lr,
        optimizer: config.optimizer,
        momentum: config.momentum,
        shuffle_seed: config.shuffle_seed,
        log_every: config.log_every,
        ..FitConfig::default()
    };
    let (x_all, y_all) = data.all_tensors(&device);
    let (x_all, y_all) = (x_all.without_autodiff(), y_all.without_autodiff());
    let mut failed = None;
    let model = fit(model, data, &fit_config, &device, |step, model| {
        let clean = half_sse(model.valid().forward_unmasked(x_all.clone()), y_all.clone());
        let record = LogRecord {
            step: step.step,
            clean_loss: tensor_io::to_f64(clean),
            masked_loss: step.loss.clone(),
            weights: None,
        };
        match check_finite(&record) {
            Ok(()) => log(&record),
            Err(e) => failed = failed.take().or(Some(e)),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(model)
}

/// [`train_deep`] for sweeps that keep only the losses: the replicas are split into `groups`
/// contiguous groups trained at the same time on their own threads, and `log` gets the same
/// records, in the same order, as one [`train_deep`] call on all of them.
///
/// On a CPU backend one batched run keeps a single thread busy outside its matmuls (Burn's
/// element-wise ops run on the calling thread); groups on their own threads keep every core
/// busy. The results do not depend on the grouping: a replica's masks come from its own stream
/// and every op acts replica by replica (tested equal, bit for bit). Masks drawn by the
/// `device` noise source come from the backend's one generator, so that source runs as one
/// group. `groups` is clamped to 1 ..= replicas.
///
/// # Errors
/// As [`train_deep`]; a diverged replica is named by its index in `replicas`.
#[allow(clippy::too_many_arguments)] // train_deep's arguments and the group count
pub fn train_deep_grouped(
    model_config: &TwoLayerReluConfig,
    depth: usize,
    replicas: &[Replica],
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
    groups: usize,
    mut log: impl FnMut(&LogRecord),
) -> Result<(), TrainError> {
    let groups = match model_config.mask.noise {
        MaskNoise::Device => 1,
        MaskNoise::Stream => groups.clamp(1, replicas.len().max(1)),
    };
    if groups == 1 {
        return train_deep(model_config, depth, replicas, data, config, device, log).map(|_| ());
    }
    let size = replicas.len().div_ceil(groups);
    let parts: Vec<&[Replica]> = replicas.chunks(size).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, LogRecord)>();
        let handles: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(g, part)| {
                let tx = tx.clone();
                scope.spawn(move || {
                    train_deep(model_config, depth, part, data, config, device, |rec| {
                        // The receiver lives until every group has finished.
                        let _ = tx.send((g, rec.clone()));
                    })
                })
            })
            .collect();
        drop(tx);
        // Each group logs the same steps in order: a step is complete once every group's
        // queue has a record at its front.
        let mut queues: Vec<VecDeque<LogRecord>> = vec![VecDeque::new(); parts.len()];
        for (g, rec) in rx {
            queues[g].push_back(rec);
            while queues.iter().all(|q| !q.is_empty()) {
                let heads: Vec<LogRecord> =
                    queues.iter_mut().filter_map(VecDeque::pop_front).collect();
                log(&merge(heads));
            }
        }
        let mut first: Option<TrainError> = None;
        for (g, handle) in handles.into_iter().enumerate() {
            let result = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if let Err(e) = result {
                let e = match e {
                    TrainError::Diverged {
                        step,
                        replica,
                        value,
                    } => TrainError::Diverged {
                        step,
                        replica: replica + g * size,
                        value,
                    },
                    other => other,
                };
                // The error one batched run would have reported: the earliest step, then the
                // lowest replica.
                first = match first {
                    Some(f) if earlier(&f, &e) => Some(f),
                    _ => Some(e),
                };
            }
        }
        first.map_or(Ok(()), Err)
    })
}

/// One record of all groups' replicas from one record per group, in group order.
fn merge(heads: Vec<LogRecord>) -> LogRecord {
    let step = heads[0].step;
    let mut out = LogRecord {
        step,
        clean_loss: Vec::new(),
        masked_loss: Vec::new(),
        weights: None,
    };
    for rec in heads {
        debug_assert_eq!(rec.step, step, "groups log the same steps");
        out.clean_loss.extend(rec.clean_loss);
        out.masked_loss.extend(rec.masked_loss);
    }
    out
}

/// Whether `a` is seen before `b` in one batched run.
fn earlier(a: &TrainError, b: &TrainError) -> bool {
    match (a, b) {
        (
            TrainError::Diverged {
                step: sa,
                replica: ra,
                ..
            },
            TrainError::Diverged {
                step: sb,
                replica: rb,
                ..
            },
        ) => (sa, ra) <= (sb, rb),
        (TrainError::Config(_), _) => true,
        _ => false,
    }
}
