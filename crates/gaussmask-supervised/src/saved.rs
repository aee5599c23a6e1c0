//! A trained run as `predict` reads it: `model.json` (the manifest: model config, input and
//! target statistics, feature and class names, one entry per model) and per model a folder
//! `models/kappa-<κ>-seed-<s>/` holding its Burn record (`model.bpk`) and its tensors as
//! `model.safetensors`. The manifest holds the SHA-256 of every file it lists, checked when
//! the file is loaded: a damaged or replaced model is refused, never used.

use std::path::Path;

use burn::tensor::Device;
use gaussmask_train::classify::load_model_bytes;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, Task};
use crate::data::Standardizer;
use crate::network::{Dims, Network};

/// The manifest's file name in a run directory.
pub const MANIFEST: &str = "model.json";
/// What the manifest's `format` says.
pub const FORMAT: &str = "gaussmask-model";
/// The manifest layout this version writes and reads (2: with the files' checksums).
pub const FORMAT_VERSION: u32 = 3;

/// One trained model of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedModel {
    /// Mask level it was trained with.
    pub kappa: f64,
    /// Its seed.
    pub seed: u64,
    /// Its folder, relative to the run directory.
    pub dir: String,
    /// Its final validation metric (MSE or accuracy); NaN without a validation part.
    pub val_metric: f64,
    /// Its test metric, with a test set.
    pub test_metric: Option<f64>,
    /// The SHA-256 (hex) of each of its files, by name within `dir`.
    pub sha256: std::collections::BTreeMap<String, String>,
}

impl SavedModel {
    /// The bytes of its file `name` in the run directory `run`, checked against its checksum.
    ///
    /// # Errors
    /// The file cannot be read, is not listed, or does not match its checksum (the message
    /// names the file).
    pub fn read_file(&self, run: &Path, name: &str) -> Result<Vec<u8>, String> {
        let path = run.join(&self.dir).join(name);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let listed = self.sha256.get(name).ok_or_else(|| {
            format!(
                "{}: not listed in {MANIFEST} with a checksum: it is not used",
                path.display()
            )
        })?;
        if *listed != gaussmask_harness::provenance::sha256_hex(&bytes) {
            return Err(format!(
                "{}: its content does not match its checksum in {MANIFEST} (damaged or \
                 replaced): it is not used",
                path.display()
            ));
        }
        Ok(bytes)
    }
}

/// Everything needed to rebuild the models and map new inputs and outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Version of the gaussmask that trained the models.
    pub gaussmask_version: String,
    /// Regression or classification.
    pub task: Task,
    /// The model config (kind, sizes, mask).
    pub model: ModelConfig,
    /// Input shape (channels, height, width).
    pub shape: [usize; 3],
    /// Outputs of the network.
    pub outputs: usize,
    /// Input names, in the order the network takes them.
    pub features: Vec<String>,
    /// The target's name.
    pub target: String,
    /// Class names, index order (classification).
    pub classes: Vec<String>,
    /// Standardization of the inputs (fitted on the training part).
    pub input_standardization: Standardizer,
    /// Standardization of a regression target.
    pub target_standardization: Standardizer,
    /// Label smoothing of the training loss.
    pub label_smoothing: f64,
    /// Float type of the training run.
    pub dtype: String,
    /// `mse` (lower is better) or `accuracy` (higher is better).
    pub metric: String,
    /// The models.
    pub models: Vec<SavedModel>,
}

/// A model's folder in the run directory.
pub fn model_dir(kappa: f64, seed: u64) -> String {
    format!(
        "models/kappa-{}-seed-{seed}",
        gaussmask_nn::kappa_label(kappa)
    )
}

impl Manifest {
    /// Reads and checks the manifest of the run directory `run`.
    ///
    /// # Errors
    /// No manifest, not JSON, another format or format version, or fields that do not fit
    /// together: the message names the file.
    pub fn read(run: &Path) -> Result<Self, String> {
        let path = run.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if run.is_dir() {
                format!(
                    "{}: no {MANIFEST} ({e}): not a run directory of gaussmask train",
                    run.display()
                )
            } else {
                format!("{}: not a run directory ({e})", run.display())
            }
        })?;
        let at = path.display();
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{at}: not JSON: {e}"))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(format!(
                "{at}: not a gaussmask model (no \"format\": \"{FORMAT}\")"
            ));
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            let written_by = value
                .get("gaussmask_version")
                .and_then(|v| v.as_str())
                .unwrap_or("an unknown version");
            return Err(format!(
                "{at}: model format version {} (written by gaussmask {written_by}); this gaussmask \
                 ({}) reads version {FORMAT_VERSION}: retrain with this version",
                version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "missing".into()),
                env!("CARGO_PKG_VERSION")
            ));
        }
        let manifest: Self = serde_json::from_value(value).map_err(|e| format!("{at}: {e}"))?;
        let d: usize = manifest.shape.iter().product();
        let consistent = manifest.features.len() == d
            && manifest.input_standardization.mean.len() == d
            && manifest.input_standardization.std.len() == d
            && !manifest.models.is_empty()
            && match manifest.task {
                Task::Regression => manifest.outputs == 1,
                Task::Classification => manifest.outputs == manifest.classes.len(),
            };
        if !consistent {
            return Err(format!(
                "{at}: its shape, features, statistics, classes and models do not fit together"
            ));
        }
        Ok(manifest)
    }

    /// The entry for `kappa` and `seed` (each optional), or the best by validation metric.
    ///
    /// # Errors
    /// No model matches: the message lists the models there are.
    pub fn choose(&self, kappa: Option<f64>, seed: Option<u64>) -> Result<&SavedModel, String> {
        let matching: Vec<&SavedModel> = self
            .models
            .iter()
            .filter(|m| kappa.is_none_or(|k| m.kappa == k) && seed.is_none_or(|s| m.seed == s))
            .collect();
        let better = |a: f64, b: f64| match self.metric.as_str() {
            "mse" => a < b,
            _ => a > b,
        };
        let best = matching.iter().copied().reduce(|best, m| {
            if better(m.val_metric, best.val_metric) {
                m
            } else {
                best
            }
        });
        best.ok_or_else(|| {
            let there: Vec<String> = self
                .models
                .iter()
                .map(|m| format!("κ = {} seed {}", m.kappa, m.seed))
                .collect();
            format!(
                "no model with{}{} (the run has: {})",
                kappa.map(|k| format!(" κ = {k}")).unwrap_or_default(),
                seed.map(|s| format!(" seed {s}")).unwrap_or_default(),
                there.join(", ")
            )
        })
    }

    /// The evaluation network of `entry`, its record loaded from the run directory `run`.
    ///
    /// # Errors
    /// The record is missing or is not a model of this manifest's shape.
    pub fn network(
        &self,
        run: &Path,
        entry: &SavedModel,
        device: &Device,
    ) -> Result<Network, String> {
        let path = run.join(&entry.dir).join("model.bpk");
        let bytes = entry.read_file(run, "model.bpk")?;
        let net = Network::init(
            &self.model,
            Dims {
                shape: self.shape,
                outputs: self.outputs,
            },
            self.task,
            entry.kappa,
            entry.seed,
            self.label_smoothing,
            device,
        );
        use burn::module::Module;
        load_model_bytes(net, &bytes)
            .map(|n| n.valid())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}
