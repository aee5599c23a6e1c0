//! `gaussmask train` and `gaussmask predict` as a user runs them, on small CSV and `.npy` files
//! written here: the run directory, one model per κ, predictions equal to the bit to those of
//! the model rebuilt in this process from its safetensors file, every bad-data case refused
//! with one line naming file, row and column (exit 2, nothing left behind), and a run killed
//! with SIGKILL that resumes to the bytes of an uninterrupted one.

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use gaussmask_supervised::config::Task;
use gaussmask_supervised::network::{Dims, Network};
use gaussmask_supervised::saved::Manifest;

use crate::checkpoints_cli::kill_after_first_checkpoints;
use crate::cli::{assert_ok, gaussmask, scratch, stderr};
use crate::reliability_cli::{files, names};

/// A regression table: y = 3a − 2b + noise-free, c constant-free, plus a text column.
fn regression_csv(rows: usize) -> String {
    let mut text = String::from("name,a,b,c,y\n");
    for i in 0..rows {
        let a = (i as f64 * 0.37).sin();
        let b = (i as f64 * 0.91).cos();
        let c = (i % 7) as f64 - 3.0;
        text.push_str(&format!(
            "r{i},{a},{b},{c},{}\n",
            3.0 * a - 2.0 * b + 0.5 * c
        ));
    }
    text
}

/// A classification table: the class of a point by its quadrant, as text labels.
fn classification_csv(rows: usize) -> String {
    let mut text = String::from("u,v,kind\n");
    for i in 0..rows {
        let u = (i as f64 * 0.61).sin();
        let v = (i as f64 * 1.37).cos();
        let kind = match (u > 0.0, v > 0.0) {
            (true, true) => "cat",
            (true, false) => "dog",
            _ => "eel",
        };
        text.push_str(&format!("{u},{v},{kind}\n"));
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn regression_config(csv: &Path) -> String {
    format!(
        "seed = 3\n[data]\nsource = \"csv\"\npath = \"{}\"\ntarget = \"y\"\n\
         [model]\nkind = \"two-layer\"\nwidth = 16\n[model.mask]\nkappa = 0.0\n\
         [train]\nepochs = 4\nbatch_size = 8\nlr = 0.01\n",
        csv.display()
    )
}

fn classification_config(csv: &Path) -> String {
    format!(
        "[data]\nsource = \"csv\"\npath = \"{}\"\ntarget = \"kind\"\ntask = \"classification\"\n\
         [model]\nkind = \"mlp\"\nhidden = [8]\n[model.mask]\nkappa = [0.0, 0.3]\n\
         [train]\nepochs = 5\nbatch_size = 10\nlr = 0.01\n",
        csv.display()
    )
}

fn train(root: &Path, config: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gaussmask(&args, root)
}

fn predict(root: &Path, run: &Path, inputs: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gaussmask(&args, root)
}

/// The model `entry` of the run rebuilt here from its `model.safetensors` (not the Burn record
/// predict reads), in evaluation mode.
fn rebuilt(run: &Path, manifest: &Manifest, entry: usize, device: &Device) -> Network {
    let m = &manifest.models[entry];
    let mut net = Network::init(
        &manifest.model,
        Dims {
            shape: manifest.shape,
            outputs: manifest.outputs,
        },
        manifest.task,
        m.kappa,
        m.seed,
        manifest.label_smoothing,
        device,
    );
    let bytes = std::fs::read(run.join(&m.dir).join("model.safetensors")).unwrap();
    net.load_from(&mut SafetensorsStore::from_bytes(Some(bytes)))
        .unwrap();
    net.valid()
}

/// Outputs of `net` on raw `rows` (the manifest's features), standardized here by hand.
fn outputs_here(
    net: &Network,
    manifest: &Manifest,
    rows: &[Vec<f64>],
    device: &Device,
) -> Vec<f64> {
    let s = &manifest.input_standardization;
    let d = manifest.features.len();
    let x: Vec<f64> = rows
        .iter()
        .flat_map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, v)| (v - s.mean[j]) / s.std[j])
        })
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows.len(), d]), device);
    let index: Vec<usize> = (0..rows.len()).collect();
    let y = net.forward_indexed(x, &index);
    let y = match manifest.task {
        Task::Regression => y,
        Task::Classification => log_softmax(y, 1),
    };
    gaussmask_nn::tensor_io::to_f64(y)
}

/// Rows of a CSV text as numbers of the named columns.
fn columns(text: &str, names: &[String]) -> Vec<Vec<f64>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).unwrap())
        .collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            at.iter().map(|&j| cells[j].parse().unwrap()).collect()
        })
        .collect()
}

#[test]
fn regression_train_then_predict_equals_the_rebuilt_model_to_the_bit() {
    let root = scratch("train-regression");
    let csv = write(&root, "data.csv", &regression_csv(60));
    let config = write(&root, "train.toml", &regression_config(&csv));
    let run = root.join("run");
    // f64, as the in-process device of this test binary.
    let o = train(
        &root,
        &config,
        &run,
        &["--set", "model.mask.kappa=[0,0.5]", "--dtype", "f64"],
    );
    assert_ok(&o);
    for file in [
        "config.toml",
        "run.json",
        "metrics.csv",
        "summary.csv",
        "learning_curve.svg",
        "learning_curve.png",
        "model.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    // One model per κ of the --set list, each with both formats.
    let manifest = Manifest::read(&run).unwrap();
    let kappas: Vec<f64> = manifest.models.iter().map(|m| m.kappa).collect();
    assert_eq!(kappas, [0.0, 0.5]);
    for m in &manifest.models {
        assert!(run.join(&m.dir).join("model.bpk").is_file());
        assert!(run.join(&m.dir).join("model.safetensors").is_file());
    }
    // The text column is not an input; the others are, in file order.
    assert_eq!(manifest.features, ["a", "b", "c"]);
    assert!(
        stderr(&o).contains("column 'name' holds text"),
        "{}",
        stderr(&o)
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("kappa,seed,epoch,step,train_mse,val_mse\n"));
    // Step 0 and 4 epochs of ⌊48/8⌋ = 6 steps, for each κ.
    assert_eq!(metrics.lines().count(), 1 + 2 * 5);
    assert!(
        metrics.lines().any(|l| l.starts_with("0.5,3,4,24,")),
        "{metrics}"
    );

    // New rows: the features in another order, an extra column, no target.
    let rows: Vec<Vec<f64>> = (0..9)
        .map(|i| vec![i as f64 * 0.1 - 0.4, 0.3 - i as f64 * 0.05, (i % 3) as f64])
        .collect();
    let mut text = String::from("c,extra,b,a\n");
    for r in &rows {
        text.push_str(&format!("{},zzz,{},{}\n", r[2], r[1], r[0]));
    }
    let inputs = write(&root, "new.csv", &text);
    for (kappa, entry) in [("0", 0), ("0.5", 1)] {
        let o = predict(&root, &run, &inputs, &["--kappa", kappa]);
        assert_ok(&o);
        let printed = columns(&String::from_utf8(o.stdout).unwrap(), &["y".to_string()]);
        let device = crate::device64();
        let net = rebuilt(&run, &manifest, entry, &device);
        let t = &manifest.target_standardization;
        let expected: Vec<f64> = outputs_here(&net, &manifest, &rows, &device)
            .iter()
            .map(|v| v * t.std[0] + t.mean[0])
            .collect();
        let printed: Vec<f64> = printed.into_iter().map(|r| r[0]).collect();
        assert_eq!(printed.len(), 9);
        for (p, e) in printed.iter().zip(&expected) {
            assert_eq!(p.to_bits(), e.to_bits(), "κ = {kappa}: {p} vs {e}");
        }
        // The same rows as a .npy array give the same values as a .npy array.
        let x = root.join(format!("new-{kappa}.npy"));
        let array = gaussmask_data::npy::Array {
            shape: vec![9, 3],
            data: rows.concat(),
        };
        std::fs::write(&x, gaussmask_data::npy::encode(&array)).unwrap();
        let out = root.join(format!("pred-{kappa}.npy"));
        let o = predict(
            &root,
            &run,
            &x,
            &["--kappa", kappa, "--out", out.to_str().unwrap()],
        );
        assert_ok(&o);
        let got = gaussmask_data::npy::read(&out).unwrap();
        assert_eq!(got.shape, [9]);
        for (p, e) in got.data.iter().zip(&expected) {
            assert_eq!(p.to_bits(), e.to_bits(), "κ = {kappa} (.npy): {p} vs {e}");
        }
    }
    // With the target column the MSE is printed too, and `.npy` in gives `.npy` out.
    let o = predict(&root, &run, &csv, &[]);
    assert_ok(&o);
    assert!(stderr(&o).contains("mse on"), "{}", stderr(&o));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn classification_train_then_predict_gives_classes_and_probabilities_to_the_bit() {
    let root = scratch("train-classes");
    let csv = write(&root, "data.csv", &classification_csv(80));
    let config = write(&root, "train.toml", &classification_config(&csv));
    let run = root.join("run");
    assert_ok(&train(&root, &config, &run, &["--dtype", "f64"]));
    let manifest = Manifest::read(&run).unwrap();
    assert_eq!(manifest.classes, ["cat", "dog", "eel"]);
    assert_eq!(manifest.models.len(), 2);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        metrics
            .starts_with("kappa,seed,epoch,step,train_loss,val_loss,train_accuracy,val_accuracy\n")
    );
    let o = predict(&root, &run, &csv, &["--kappa", "0.3"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("accuracy on"), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("kind,probability"));
    let rows = columns(&classification_csv(80), &["u".to_string(), "v".to_string()]);
    let device = crate::device64();
    let net = rebuilt(&run, &manifest, 1, &device);
    let logp = outputs_here(&net, &manifest, &rows, &device);
    for (line, lp) in lines.zip(logp.chunks_exact(3)) {
        let (class, p) = line.split_once(',').unwrap();
        let k = (0..3).fold(0, |b, k| if lp[k] > lp[b] { k } else { b });
        assert_eq!(class, manifest.classes[k]);
        assert_eq!(p.parse::<f64>().unwrap().to_bits(), lp[k].exp().to_bits());
    }
    std::fs::remove_dir_all(root).unwrap();
}

/// The error line of a failed command: exit 2, exactly one line on stderr.
pub(crate) fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

#[test]
fn a_field_of_another_source_or_model_kind_is_refused_not_ignored() {
    let root = scratch("train-foreign-field");
    let csv = write(&root, "data.csv", &regression_csv(40));
    let config = write(&root, "c.toml", &regression_config(&csv));
    let cases: &[(&str, &str)] = &[
        // An MLP's layers given to the two-layer network would train a 16-wide two-layer net.
        ("model.hidden=[64]", "unknown field `hidden`"),
        ("model.dropout=0.5", "unknown field `dropout`"),
        // .npy and IDX fields on a CSV source.
        ("data.inputs=\"x.npy\"", "unknown field `inputs`"),
        ("data.labels=\"l.idx\"", "unknown field `labels`"),
        ("data.sythetic.n=5", "unknown field `sythetic`"),
    ];
    for (set, part) in cases {
        let line = refused(&train(&root, &config, &root.join("run"), &["--set", set]));
        assert!(line.contains(part), "{set}: {line}");
    }
    // The same fields are read where they belong.
    let mlp = train(
        &root,
        &config,
        &root.join("mlp"),
        &[
            "--set",
            "model={kind = \"mlp\", hidden = [4], dropout = 0.1}",
            "--set",
            "train.epochs=1",
        ],
    );
    assert!(mlp.status.success(), "{}", stderr(&mlp));
    // .npy test inputs without their targets are refused before anything is read.
    let npy = write(
        &root,
        "npy.toml",
        "[data]\nsource = \"npy\"\ninputs = \"x.npy\"\ntargets = \"y.npy\"\n\
         test_path = \"xt.npy\"\n",
    );
    let line = refused(&train(&root, &npy, &root.join("run"), &[]));
    assert!(
        line.contains("data.test_labels must be given together with data.test_path"),
        "{line}"
    );
    assert!(!root.join("run").exists());
}

#[test]
fn bad_data_is_one_line_naming_file_row_and_column_and_leaves_nothing() {
    let root = scratch("train-bad");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "ragged.csv",
            "a,b,y\n1,2,3\n4,5\n",
            &[
                "ragged.csv: row 2 (line 3) has 2 fields",
                "column 'y' is missing",
            ],
        ),
        (
            "text.csv",
            "a,b,y\n1,2,3\n4,x,6\n7,8,9\n",
            &["text.csv: row 2 (line 3), column 'b': 'x' is not a number"],
        ),
        (
            "nan.csv",
            "a,b,y\n1,NaN,3\n4,5,6\n7,8,9\n",
            &["nan.csv: row 1 (line 2), column 'b': 'NaN' is NaN"],
        ),
        (
            "inf.csv",
            "a,b,y\n1,2,3\n4,5,-inf\n7,8,9\n",
            &["inf.csv: row 2 (line 3), column 'y': '-inf' is infinite"],
        ),
        ("empty.csv", "", &["empty.csv: empty file"]),
        (
            "notarget.csv",
            "a,b,z\n1,2,3\n",
            &["notarget.csv: no column 'y' (columns: a, b, z)"],
        ),
    ];
    for (name, text, parts) in cases {
        let csv = write(&root, name, text);
        let config = write(&root, "bad.toml", &regression_config(&csv));
        let line = refused(&train(&root, &config, &root.join("run"), &[]));
        for part in *parts {
            assert!(line.contains(part), "{name}: {line}");
        }
    }
    // .npy: lengths that differ, a wrong rank, a dtype that is not numbers.
    let npy = |name: &str, shape: &[usize], descr: &str, body: &[u8]| {
        let dims: Vec<String> = shape.iter().map(|s| format!("{s},")).collect();
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}), }}",
            dims.join(" ")
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(body);
        let path = root.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let floats = |n: usize| {
        (0..n)
            .flat_map(|i| (i as f64).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let x = npy("x.npy", &[6, 2], "<f8", &floats(12));
    let y5 = npy("y5.npy", &[5], "<f8", &floats(5));
    let y2d = npy("y2d.npy", &[6, 2], "<f8", &floats(12));
    let ycomplex = npy("yc.npy", &[6], "<c16", &[0; 96]);
    let npy_config = |targets: &Path| {
        write(
            &root,
            "npy.toml",
            &format!(
                "[data]\nsource = \"npy\"\ninputs = \"{}\"\ntargets = \"{}\"\n[train]\nepochs = 1\n",
                x.display(),
                targets.display()
            ),
        )
    };
    for (targets, part) in [
        (
            &y5,
            format!(
                "{} has 5 targets but {} has 6 rows",
                y5.display(),
                x.display()
            ),
        ),
        (
            &y2d,
            format!(
                "{}: targets must be an array [n], got shape [6, 2]",
                y2d.display()
            ),
        ),
        (
            &ycomplex,
            format!("{}: dtype '<c16' is not supported", ycomplex.display()),
        ),
    ] {
        let line = refused(&train(&root, &npy_config(targets), &root.join("run"), &[]));
        assert!(line.contains(&part), "{line}");
    }
    // Nothing was left by the refused runs.
    let left: Vec<String> = names(&root)
        .into_iter()
        .filter(|n| n.starts_with('.') || n == "run")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // A constant input is a warning, not a division by zero.
    let mut constant = String::from("a,k,y\n");
    for i in 0..30 {
        constant.push_str(&format!("{i},7,{}\n", i * 2));
    }
    let csv = write(&root, "constant.csv", &constant);
    let config = write(&root, "constant.toml", &regression_config(&csv));
    let run = root.join("run");
    let o = train(&root, &config, &run, &[]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("warning: input 'k' is constant over the training rows"),
        "{}",
        stderr(&o)
    );

    // predict: a missing feature column, and model directories of another version or kind.
    let missing = write(&root, "missing.csv", "a,y\n1,2\n");
    let line = refused(&predict(&root, &run, &missing, &[]));
    assert!(
        line.contains("missing.csv: no column 'k' (columns: a, y)"),
        "{line}"
    );
    let manifest_path = run.join("model.json");
    let good = std::fs::read_to_string(&manifest_path).unwrap();
    let edits = [
        (
            "\"format_version\": 3",
            "\"format_version\": 7",
            "model format version 7",
        ),
        ("\"width\": 16", "\"width\": 17", "model.bpk"),
        (
            "\"kind\": \"two-layer\"",
            "\"kind\": \"mlp\"",
            "expected one of `hidden`, `activation`, `dropout`",
        ),
        (
            "\"kind\": \"two-layer\"",
            "\"kind\": \"transformer\"",
            "unknown variant `transformer`",
        ),
    ];
    for (from, to, part) in edits {
        assert!(good.contains(from), "{from}");
        std::fs::write(&manifest_path, good.replace(from, to)).unwrap();
        let line = refused(&predict(&root, &run, &csv, &[]));
        assert!(line.contains(part), "{to}: {line}");
        assert!(line.contains(&run.display().to_string()), "{to}: {line}");
    }
    std::fs::write(&manifest_path, &good).unwrap();
    let line = refused(&predict(&root, &root.join("nowhere"), &csv, &[]));
    assert!(line.contains("nowhere: not a run directory"), "{line}");
    // --out never overwrites.
    let existing = write(&root, "taken.csv", "keep me\n");
    let line = refused(&predict(
        &root,
        &run,
        &csv,
        &["--out", existing.to_str().unwrap()],
    ));
    assert!(line.contains("taken.csv: the file exists"), "{line}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me\n");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_killed_train_run_resumes_to_the_bytes_of_an_uninterrupted_one() {
    let root = scratch("train-killed");
    let csv = write(&root, "data.csv", &classification_csv(200));
    let config = write(
        &root,
        "train.toml",
        &classification_config(&csv).replace("epochs = 5", "epochs = 60"),
    );
    let (out, whole) = (root.join("run"), root.join("whole"));
    assert_ok(&train(&root, &config, &whole, &["--checkpoint-every", "7"]));
    let args = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--checkpoint-every",
        "7",
    ];
    kill_after_first_checkpoints("train", &args, &root.join(".run.checkpoint"));
    assert!(!out.exists());
    let o = gaussmask(&["train", "--resume", out.to_str().unwrap()], &root);
    assert_ok(&o);
    let (a, b) = (files(&whole), files(&out));
    let rel = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(rel(&a), rel(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after the resume");
    }
    assert!(!root.join(".run.checkpoint").exists());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn train_dp_solves_the_noise_for_a_target_epsilon_and_reports_it() {
    let root = scratch("train-dp");
    let csv = write(&root, "data.csv", &regression_csv(200));
    let config = write(&root, "c.toml", &regression_config(&csv));
    let run = root.join("run");
    let o = train(
        &root,
        &config,
        &run,
        &["--set", "train.dp={clip = 1.0, epsilon = 4.0}"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let privacy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("privacy.json")).unwrap()).unwrap();
    let epsilon = privacy["epsilon"].as_f64().unwrap();
    let sigma = privacy["noise_multiplier"].as_f64().unwrap();
    let q = privacy["sampling_rate"].as_f64().unwrap();
    let steps = privacy["steps"].as_u64().unwrap();
    assert!(epsilon <= 4.0 && epsilon > 3.5, "{privacy}");
    // The ε printed is the accountant's for the noise the run used.
    let again = gaussmask_privacy::pld_epsilon(q, sigma, steps, 1e-5, 1e-4);
    assert_eq!(epsilon, again);
    assert!(stderr(&o).contains("ε = "), "{}", stderr(&o));
    // Both or neither of noise and ε, and a CNN with batch norm, are refused.
    for (set, part) in [
        (
            "train.dp={clip = 1.0, epsilon = 4.0, noise_multiplier = 1.0}",
            "train.dp.epsilon must be given instead of train.dp.noise_multiplier",
        ),
        ("train.dp={clip = 1.0}", "(give one of them), got neither"),
        ("train.dp={clip = 0.0, epsilon = 1.0}", "train.dp.clip"),
        // An ε no noise reaches at this δ.
        (
            "train.dp={clip = 1.0, epsilon = 1e-9}",
            "train.dp.epsilon: no noise multiplier up to 10⁴ gives ε = 0.000000001",
        ),
    ] {
        let line = refused(&train(&root, &config, &root.join("bad"), &["--set", set]));
        assert!(line.contains(part), "{set}: {line}");
    }
    let line = refused(&train(
        &root,
        &config,
        &root.join("bad"),
        &[
            "--set",
            "model={kind = \"cnn\"}",
            "--set",
            "train.dp={clip = 1.0, noise_multiplier = 1.0}",
        ],
    ));
    assert!(
        line.contains("model.batch_norm must be false with train.dp"),
        "{line}"
    );
    assert!(!root.join("bad").exists());
}
