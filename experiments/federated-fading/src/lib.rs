//! `federated-fading`: FedAvg when clients' features arrive through a fading channel. K clients
//! hold disjoint equal shards; in every round each client starts from the global model, trains
//! on its shard with every feature multiplied by c ~ N(1, κ²) (redrawn per round and per
//! sample: one local epoch sees each sample once), and the server averages the clients' models.
//! Two tasks: an image classifier (Fashion-MNIST MLP) and the trajectories regression (the
//! paper's two-layer ReLU network, full-batch local GD).

use burn::tensor::Device;
use gaussmask_data::images::{ImageDataset, disjoint_splits};
use gaussmask_data::{Dataset, SyntheticConfig};
use gaussmask_harness::InputError;
use gaussmask_harness::config::{require, require_distinct};
use gaussmask_harness::plot::{LinePlot, Series};
use gaussmask_harness::{HarnessError, Resumable, RunContext, Study, Unit};
use gaussmask_images::{ImageDataConfig, Images, prepare};
use gaussmask_nn::image::{ImageModelConfig, MaskedNet};
use gaussmask_nn::rng::{derive_seed, tag};
use gaussmask_nn::{InputMask, MaskConfig, TwoLayerReluConfig};
use gaussmask_train::classify::{
    ClassifierSpec, ClassifyConfig, Parameters, accuracy, load_model_bytes, model_bytes,
    parameters, posteriors, train_classifier, with_parameters,
};
use gaussmask_train::reference::two_layer_gradient;
use serde::{Deserialize, Serialize};

mod tables;

/// The image task.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTask {
    /// Dataset.
    pub dataset: ImageDataset,
    /// Images used (`n_train` are split among the clients).
    pub data: ImageDataConfig,
    /// The shared model.
    pub model: ImageModelConfig,
    /// Each client's local training per round (`epochs` local epochs).
    pub local: ClassifyConfig,
    /// Communication rounds.
    pub rounds: usize,
}

/// The regression task: the trajectories problem.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionTask {
    /// Training data (split among the clients).
    pub data: SyntheticConfig,
    /// Held-out samples from the same teacher.
    pub n_test: usize,
    /// Width m and init scale τ of the two-layer network (output signs fixed).
    pub width: usize,
    /// Init scale τ.
    pub tau: f64,
    /// GD steps per client per round.
    pub local_steps: usize,
    /// Step size of GD on ½Σ(f − y)² over all the data; a client with 1/K of it steps with
    /// K·lr, so that K = 1 and one local step is plain full-batch GD.
    pub lr: f64,
    /// Communication rounds.
    pub rounds: usize,
}

/// The experiment's config (`configs/federated-fading.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedConfig {
    /// Base seed.
    #[serde(default)]
    pub seed: u64,
    /// Channel strengths κ.
    pub kappas: gaussmask_nn::KappaGrid,
    /// Numbers of clients K.
    pub clients: Vec<usize>,
    /// The image task (absent: skipped).
    #[serde(default)]
    pub image: Option<ImageTask>,
    /// The regression task (absent: skipped).
    #[serde(default)]
    pub regression: Option<RegressionTask>,
}

impl FederatedConfig {
    fn resolve(&mut self) -> Result<(), String> {
        require_distinct("clients", &self.clients)?;
        require(
            !self.clients.is_empty() && !self.clients.contains(&0),
            "clients",
            "a non-empty list of counts ≥ 1",
            format!("{:?}", self.clients),
        )?;
        require(
            self.image.is_some() || self.regression.is_some(),
            "image",
            "present (or regression present)",
            "neither task",
        )?;
        let most = *self.clients.iter().max().expect("non-empty");
        if let Some(t) = &mut self.image {
            t.data.validate()?;
            gaussmask_images::check_dataset(t.dataset, t.data.path.as_deref())?;
            t.model.validate([1, 28, 28])?;
            require(t.rounds >= 1, "image.rounds", "≥ 1", t.rounds)?;
            require(
                t.data.n_train >= most,
                "image.data.n_train",
                &format!("≥ the largest client count {most}"),
                t.data.n_train,
            )?;
            t.local.validate("image.local")?;
            require(
                t.local.epochs >= 1,
                "image.local.epochs",
                "≥ 1",
                t.local.epochs,
            )?;
        }
        if let Some(t) = &self.regression {
            t.data.validate()?;
            require(
                t.data.n >= most,
                "regression.data.n",
                &format!("≥ {most}"),
                t.data.n,
            )?;
            require(t.n_test >= 1, "regression.n_test", "≥ 1", t.n_test)?;
            require(t.width >= 1, "regression.width", "≥ 1", t.width)?;
            require(
                t.local_steps >= 1,
                "regression.local_steps",
                "≥ 1",
                t.local_steps,
            )?;
            require(t.rounds >= 1, "regression.rounds", "≥ 1", t.rounds)?;
            require(
                t.lr.is_finite() && t.lr > 0.0,
                "regression.lr",
                "a number > 0",
                t.lr,
            )?;
            require(
                t.tau.is_finite() && t.tau > 0.0,
                "regression.tau",
                "a number > 0",
                t.tau,
            )?;
        }
        Ok(())
    }
}

/// One round of one (task, κ, K) cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// Round (1-based).
    pub round: usize,
    /// Image task: clean test accuracy of the global model; regression: NaN.
    pub test_accuracy: f64,
    /// Image task: clean test cross-entropy; regression: clean test MSE.
    pub test_loss: f64,
    /// Clean training loss of the global model (cross-entropy; regression ½Σ(f − y)²/n).
    pub train_loss: f64,
}

/// Per-round history of one cell (what its checkpoint keeps besides the global model).
pub type History = Vec<RoundRow>;

/// A client's seed in a round: distinct streams for every (κ, round, client).
fn client_seed(seed: u64, kappa_index: usize, round: usize, client: usize) -> u64 {
    derive_seed(
        seed,
        tag::CLIENT,
        &[kappa_index as u64, round as u64, client as u64],
    )
}

/// Equal-weight average of the clients' parameters.
fn average(models: &[Parameters]) -> Parameters {
    let k = models.len() as f64;
    let mut mean = models[0].clone();
    for (i, (_, values)) in mean.iter_mut().enumerate() {
        for (j, v) in values.iter_mut().enumerate() {
            *v = models.iter().map(|m| m[i].1[j]).sum::<f64>() / k;
        }
    }
    mean
}

/// The image task's model of `seed`'s initial weights on the host device, mask off.
fn host_model(t: &ImageTask, train: &Images, seed: u64, device: &Device) -> MaskedNet {
    // Evaluation only: no mask; the host device is not an autodiff one, so dropout and batch
    // statistics are off too.
    t.model.init(train.shape, train.classes, 0.0, seed, device)
}

fn clean_metrics(model: &MaskedNet, images: &Images, device: &Device) -> (f64, f64) {
    let p = posteriors(model, images.view(), 500, device);
    let loss = p
        .chunks_exact(images.classes)
        .zip(&images.labels)
        .map(|(row, &l)| -(row[l as usize].max(1e-12) as f64).ln())
        .sum::<f64>()
        / images.labels.len() as f64;
    (accuracy(&p, &images.labels, images.classes), loss)
}

/// FedAvg on the image task for one (κ, K) as [`Resumable`] work: a step is a round, and the
/// global model after it is what is saved.
struct Rounds<'a> {
    t: &'a ImageTask,
    train: &'a Images,
    test: &'a Images,
    kappa: (usize, f64),
    seed: u64,
    datasets: Vec<Dataset>,
    global: Parameters,
    round: usize,
    device: &'a Device,
    label: &'a str,
}

impl Rounds<'_> {
    /// A host model (mask off) holding the global parameters.
    fn snapshot(&self) -> Result<MaskedNet, HarnessError> {
        with_parameters(
            host_model(self.t, self.train, 0, self.device),
            self.global.clone(),
        )
        .map_err(|e| HarnessError::run(format!("{}: {e}", self.label)))
    }
}

impl Resumable for Rounds<'_> {
    type Side = History;

    fn step(&self) -> usize {
        self.round
    }

    fn steps(&self) -> usize {
        self.t.rounds
    }

    fn advance(&mut self, history: &mut History) -> Result<(), HarnessError> {
        let ad = self.device.clone().autodiff();
        let mut locals = Vec::with_capacity(self.datasets.len());
        for (k, data) in self.datasets.iter().enumerate() {
            let spec = ClassifierSpec {
                model: &self.t.model,
                train: &self.t.local,
                kappa: self.kappa.1,
                seed: client_seed(self.seed, self.kappa.0, self.round, k),
            };
            let start = with_parameters(
                spec.init(self.train.shape, self.train.classes, &ad),
                self.global.clone(),
            )
            .map_err(|e| HarnessError::run(e.to_string()))?;
            let local = train_classifier(spec, start, data, &ad, || ()).map_err(|e| {
                HarnessError::run(format!("{} round {}: {e}", self.label, self.round + 1))
            })?;
            locals.push(parameters(&local));
        }
        self.global = average(&locals);
        self.round += 1;
        let snapshot = self.snapshot()?;
        let (test_accuracy, test_loss) = clean_metrics(&snapshot, self.test, self.device);
        let (_, train_loss) = clean_metrics(&snapshot, self.train, self.device);
        history.push(RoundRow {
            round: self.round,
            test_accuracy,
            test_loss,
            train_loss,
        });
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, HarnessError> {
        model_bytes(&self.snapshot()?).map_err(|e| HarnessError::run(e.to_string()))
    }

    fn save_every_step(&self) -> bool {
        true
    }

    fn step_name(&self) -> &'static str {
        "round"
    }
}

/// FedAvg on the image task for one (κ, K), round checkpoints included.
#[allow(clippy::too_many_arguments)]
fn image_cell(
    ctx: &RunContext,
    t: &ImageTask,
    train: &Images,
    test: &Images,
    kappa: (usize, f64),
    clients: usize,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<History, HarnessError> {
    let key = format!("image-k{}-c{clients}", kappa.1);
    let shard = train.labels.len() / clients;
    let shards = disjoint_splits(train.labels.len(), &vec![shard; clients], seed)
        .map_err(HarnessError::input)?;
    let datasets: Vec<Dataset> = shards
        .iter()
        .map(|rows| train.subset(rows).view().dataset())
        .collect();
    let per_round = t.local.steps_per_epoch(shard) * t.local.epochs * clients;
    let begin = |saved: Option<(&[u8], &History)>| {
        let (global, round) = match saved {
            Some((bytes, history)) => {
                let model = load_model_bytes(host_model(t, train, 0, &ctx.device), bytes)
                    .map_err(|e| e.to_string())?;
                (parameters(&model), history.len())
            }
            None => (parameters(&host_model(t, train, seed, &ctx.device)), 0),
        };
        Ok(Rounds {
            t,
            train,
            test,
            kappa,
            seed,
            datasets,
            global,
            round,
            device: &ctx.device,
            label: &key,
        })
    };
    let (_, history) = ctx.run_resumable(
        &key,
        &key,
        begin,
        |_| Vec::new(),
        || bar.inc(per_round as u64),
    )?;
    Ok(history)
}

/// The two-layer network with fixed output signs `a`, on inputs of dimension `d`.
struct TwoLayer<'a> {
    a: &'a [f64],
    d: usize,
}

impl TwoLayer<'_> {
    /// GD step on ½Σ_i (f(W, x̃_i) − y_i)² over `rows`, x̃ = x ⊙ c with c drawn by `mask`
    /// fresh per sample (and per step).
    fn step(&self, w: &mut [f64], data: &Dataset, rows: &[usize], mask: &InputMask, lr: f64) {
        let d = self.d;
        let c = mask.sample(rows, d);
        let mut x = Vec::with_capacity(rows.len() * d);
        for (&i, c) in rows.iter().zip(c.chunks_exact(d)) {
            x.extend(data.x[i * d..(i + 1) * d].iter().zip(c).map(|(x, c)| x * c));
        }
        let y: Vec<f64> = rows.iter().map(|&i| data.y[i]).collect();
        let mut grad = vec![0.0; w.len()];
        two_layer_gradient(w, self.a, None, 1.0, &x, &y, &mut grad);
        for (wv, g) in w.iter_mut().zip(grad) {
            *wv -= lr * g;
        }
    }
}

fn regression_cell(
    t: &RegressionTask,
    train: &Dataset,
    test: &Dataset,
    kappa: (usize, f64),
    clients: usize,
    seed: u64,
) -> History {
    let model = TwoLayerReluConfig {
        width: t.width,
        input_dim: t.data.d,
        tau: t.tau,
        ..TwoLayerReluConfig::new(t.data.d, t.width)
    };
    let (mut w, a) = model.initial_weights(seed);
    let net = TwoLayer { a: &a, d: t.data.d };
    let shard = train.n / clients;
    let shards = disjoint_splits(train.n, &vec![shard; clients], seed).expect("checked sizes");
    let mut history = Vec::with_capacity(t.rounds);
    for round in 0..t.rounds {
        let locals: Vec<Vec<f64>> = shards
            .iter()
            .enumerate()
            .map(|(k, rows)| {
                let mut wk = w.clone();
                let mask =
                    MaskConfig::default().init(kappa.1, client_seed(seed, kappa.0, round, k));
                for _ in 0..t.local_steps {
                    net.step(&mut wk, train, rows, &mask, t.lr * clients as f64);
                }
                wk
            })
            .collect();
        for (j, v) in w.iter_mut().enumerate() {
            *v = locals.iter().map(|l| l[j]).sum::<f64>() / clients as f64;
        }
        history.push(RoundRow {
            round: round + 1,
            test_accuracy: f64::NAN,
            test_loss: test.mse(&w, &a),
            train_loss: 0.5 * train.mse(&w, &a),
        });
    }
    history
}

/// Final round of one cell, for the summary table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRow {
    /// "image" or "regression".
    pub task: String,
    /// κ.
    pub kappa: f64,
    /// Clients K.
    pub clients: usize,
    /// The last round.
    pub last: RoundRow,
}

/// FedAvg over fading channels.
pub struct FederatedFading;

/// One unit of work: one (task, κ, K) cell.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// The image task (else the regression task).
    pub image: bool,
    /// Index of κ in `kappas`, and κ.
    pub kappa: (usize, f64),
    /// Clients K.
    pub clients: usize,
}

impl Study for FederatedFading {
    type Config = FederatedConfig;
    type Unit = Cell;
    type Output = History;

    fn id(&self) -> &'static str {
        "federated-fading"
    }

    fn about(&self) -> &'static str {
        "FedAvg whose clients see features through x ⊙ c: accuracy and loss vs κ and clients"
    }

    fn default_config(&self) -> &'static str {
        include_str!("../../../configs/federated-fading.toml")
    }

    fn validate(&self, config: &mut FederatedConfig) -> Result<(), InputError> {
        Ok(config.resolve()?)
    }

    /// The regression cells, then the image cells, κ-major.
    fn units(&self, c: &FederatedConfig) -> Vec<Unit<Cell>> {
        let tasks = [(false, c.regression.is_some()), (true, c.image.is_some())];
        let mut out = Vec::new();
        for (image, present) in tasks {
            if !present {
                continue;
            }
            for (ki, &kappa) in c.kappas.iter().enumerate() {
                for &clients in &c.clients {
                    let task = if image { "image" } else { "regression" };
                    out.push(Unit::new(
                        format!("{task}-k{}-c{clients}", gaussmask_nn::kappa_label(kappa)),
                        Cell {
                            image,
                            kappa: (ki, kappa),
                            clients,
                        },
                    ));
                }
            }
        }
        out
    }

    fn run_unit(
        &self,
        c: &FederatedConfig,
        unit: &Unit<Cell>,
        ctx: &RunContext,
    ) -> Result<History, HarnessError> {
        let Cell {
            image,
            kappa,
            clients: k,
        } = unit.spec;
        match (&c.image, &c.regression) {
            (Some(t), _) if image => {
                let (train, test) = prepare(t.dataset, &t.data)?;
                let steps = t.local.steps_per_epoch(train.labels.len() / k) * t.local.epochs * k;
                let bar = ctx.progress((steps * t.rounds) as u64, &unit.key);
                let h = image_cell(ctx, t, &train, &test, kappa, k, c.seed, &bar)?;
                bar.finish_and_clear();
                eprintln!(
                    "image κ = {} K = {k}: test accuracy {:.4}",
                    kappa.1,
                    h.last().map_or(f64::NAN, |r| r.test_accuracy)
                );
                Ok(h)
            }
            (_, Some(t)) => {
                let mut all = t.data.clone();
                all.n = t.data.n + t.n_test;
                let (train, test) = all.generate().split(t.data.n);
                let h = regression_cell(t, &train, &test, kappa, k, c.seed);
                eprintln!(
                    "regression κ = {} K = {k}: train loss {:.4}, test MSE {:.4}",
                    kappa.1,
                    h.last().map_or(f64::NAN, |r| r.train_loss),
                    h.last().map_or(f64::NAN, |r| r.test_loss)
                );
                Ok(h)
            }
            _ => Err(HarnessError::run(format!(
                "internal error: unit {} of a task the config does not have",
                unit.key
            ))),
        }
    }

    fn reduce(
        &self,
        c: &FederatedConfig,
        outputs: Vec<(Unit<Cell>, History)>,
        ctx: &mut RunContext,
    ) -> Result<(), HarnessError> {
        let cells: Vec<(String, f64, usize, History)> = outputs
            .into_iter()
            .map(|(unit, h)| {
                let task = if unit.spec.image {
                    "image"
                } else {
                    "regression"
                };
                (task.to_string(), unit.spec.kappa.1, unit.spec.clients, h)
            })
            .collect();
        write_outputs(c, &cells, ctx)
    }

    fn tables(
        &self,
        record: &gaussmask_harness::records::Record,
    ) -> Result<gaussmask_harness::records::Tables, HarnessError> {
        tables::tables(record)
    }
}

/// One line of `rounds.csv`.
#[derive(Serialize)]
struct CsvRow<'a> {
    task: &'a str,
    kappa: f64,
    clients: usize,
    round: usize,
    /// Empty for the regression task (no accuracy there).
    test_accuracy: Option<f64>,
    test_loss: f64,
    train_loss: f64,
}

fn write_outputs(
    c: &FederatedConfig,
    cells: &[(String, f64, usize, History)],
    ctx: &RunContext,
) -> Result<(), HarnessError> {
    let mut csv = Vec::new();
    let mut summary = Vec::new();
    for (task, kappa, k, h) in cells {
        for r in h {
            csv.push(CsvRow {
                task,
                kappa: *kappa,
                clients: *k,
                round: r.round,
                test_accuracy: r.test_accuracy.is_finite().then_some(r.test_accuracy),
                test_loss: r.test_loss,
                train_loss: r.train_loss,
            });
        }
        if let Some(last) = h.last() {
            summary.push(CellRow {
                task: task.clone(),
                kappa: *kappa,
                clients: *k,
                last: last.clone(),
            });
        }
    }
    ctx.write_csv("rounds.csv", &csv)?;
    ctx.write_json(
        "summary.json",
        &serde_json::json!({ "cells": summary, "wall_time_s": ctx.elapsed().as_secs_f64() }),
    )?;
    let figure = |task: &str, pick: fn(&RoundRow) -> f64, y: &str, log_y: bool| {
        let series = c
            .clients
            .iter()
            .map(|&k| Series {
                label: format!("K = {k} clients"),
                points: summary
                    .iter()
                    .filter(|s| s.task == task && s.clients == k)
                    .map(|s| (s.kappa, pick(&s.last)))
                    .collect(),
                ..Series::default()
            })
            .collect();
        let plot = LinePlot {
            title: format!("FedAvg over fading channels: {task} task, last round"),
            x_label: "κ".into(),
            y_label: y.into(),
            log_y,
            series,
            ..LinePlot::default()
        };
        ctx.plot(&plot, &format!("{task}_vs_kappa"))
    };
    if c.image.is_some() {
        figure("image", |r| r.test_accuracy, "clean test accuracy", false)?;
    }
    if c.regression.is_some() {
        figure("regression", |r| r.test_loss, "clean test MSE", true)?;
    }
    println!(
        "{:<11} {:>6} {:>8}  {:>9} {:>10} {:>10}",
        "task", "kappa", "clients", "test acc", "test loss", "train loss"
    );
    for s in &summary {
        println!(
            "{:<11} {:>6} {:>8}  {:>9.4} {:>10.4} {:>10.4}",
            s.task, s.kappa, s.clients, s.last.test_accuracy, s.last.test_loss, s.last.train_loss
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::FloatDType;
    use gaussmask_data::SyntheticConfig;
    use gaussmask_nn::tensor_io::to_f64;
    use gaussmask_nn::{Replica, TwoLayerRelu};
    use gaussmask_train::fit::{FitConfig, fit};

    use super::*;

    /// The regression cells' own masked-GD step and FedAvg round against the generic trainer:
    /// each client's local steps are `fit` (full-batch GD on its shard, with the client's mask
    /// stream, at K·lr), the round's model the mean of the clients'.
    #[test]
    fn regression_rounds_equal_fedavg_of_the_generic_trainer() {
        let t = RegressionTask {
            data: SyntheticConfig::new(60, 5),
            n_test: 20,
            width: 12,
            tau: 1.0,
            local_steps: 3,
            lr: 0.01,
            rounds: 3,
        };
        let mut all = t.data.clone();
        all.n = t.data.n + t.n_test;
        let (train, test) = all.generate().split(t.data.n);
        let (kappa, clients, seed) = ((1, 0.7), 3, 4);
        let history = regression_cell(&t, &train, &test, kappa, clients, seed);

        let mut device = Device::flex();
        // The experiment's own step is f64 on the host; compare in f64.
        let _ = device.configure(FloatDType::F64);
        let device = device.autodiff();
        let model = TwoLayerReluConfig {
            tau: t.tau,
            ..TwoLayerReluConfig::new(t.data.d, t.width)
        };
        let (mut w, a) = model.initial_weights(seed);
        let shards = disjoint_splits(train.n, &vec![train.n / clients; clients], seed).unwrap();
        let config = FitConfig {
            steps: t.local_steps,
            lr: t.lr * clients as f64,
            ..FitConfig::default()
        };
        for (round, row) in history.iter().enumerate() {
            let mut sum = vec![0.0; w.len()];
            for (k, rows) in shards.iter().enumerate() {
                let shard = Dataset {
                    x: rows
                        .iter()
                        .flat_map(|&i| train.x[i * train.d..(i + 1) * train.d].to_vec())
                        .collect(),
                    y: rows.iter().map(|&i| train.y[i]).collect(),
                    n: rows.len(),
                    d: train.d,
                };
                let replica = Replica {
                    kappa: kappa.1,
                    seed: client_seed(seed, kappa.0, round, k),
                };
                let net = TwoLayerRelu::from_weights(
                    w.clone(),
                    a.clone(),
                    [1, t.width, t.data.d],
                    false,
                    MaskConfig::default().init_replicas(&[replica]),
                    &device,
                );
                let local = fit(net, &shard, &config, &device, |_, _| {}).unwrap();
                for (s, v) in sum.iter_mut().zip(to_f64(local.w.val())) {
                    *s += v / clients as f64;
                }
            }
            w = sum;
            let want = test.mse(&w, &a);
            let got = row.test_loss;
            assert!(
                (got - want).abs() <= 1e-10 * want,
                "round {round}: test MSE {got} vs {want} from the generic trainer"
            );
        }
        // The rounds moved the model: the comparison is not between two untrained nets.
        assert!(history[t.rounds - 1].test_loss != history[0].test_loss);
    }
}
