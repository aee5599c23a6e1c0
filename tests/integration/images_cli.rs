//! The real-data experiments through the command line: smoke runs on a few hundred images of
//! the installed datasets (CI installs them; a missing dataset fails with its install command),
//! their validation errors, and interrupting a run with SIGINT and resuming it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::{
    BIN, assert_ok, assert_one_line_error, assert_rejected, csv_rows, gaussmask, scratch,
    smoke_run, smoke_run_with, stderr,
};

#[test]
fn image_accuracy_smoke_run_beats_chance_for_every_model() {
    let files = [
        "accuracy.csv",
        "accuracy_fashion-mnist.png",
        "accuracy_fashion-mnist.svg",
    ];
    let (root, _, _, s) = smoke_run("image-accuracy", &files);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 models × 2 κ");
    for r in rows {
        // 10 classes: chance is 0.1; 300 images and 2 epochs reach well above it.
        let acc = r["accuracy"].as_f64().unwrap();
        assert!(acc > 0.4, "{r}");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn membership_inference_smoke_run_attacks_every_setting() {
    let files = [
        "attack.csv",
        "auc_mlp-128.png",
        "auc_cnn-16-32.png",
        "lira.csv",
        "lira_tpr_mlp-128.png",
        "lira_roc_mlp-128.png",
    ];
    let (root, out, _, s) = smoke_run("membership-inference", &files);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2, "2 models × 2 κ × 2 epoch counts");
    // Each split holds 100 images: the attack is scored on 100 members and 100 non-members.
    let (members, non_members) = (100.0_f64, 100.0_f64);
    // Null standard error of the AUC (Mann–Whitney) for these counts.
    let auc_se = ((members + non_members + 1.0) / (12.0 * members * non_members)).sqrt();
    for r in rows {
        let a = &r["attack"];
        let (auc, acc) = (a["auc"].as_f64().unwrap(), a["accuracy"].as_f64().unwrap());
        let (precision, recall) = (
            a["precision"].as_f64().unwrap(),
            a["recall"].as_f64().unwrap(),
        );
        // Two to four epochs on 100 images barely overfit: the attack must sit at chance. A
        // leak of the membership labels into the attack features would push it far above.
        assert!(
            (auc - 0.5).abs() < 4.0 * auc_se,
            "AUC {auc} is not at chance: {r}"
        );
        // Accuracy, precision and recall must describe one confusion matrix.
        let tp = recall * members;
        let fp = tp / precision - tp;
        let implied = (tp + non_members - fp) / (members + non_members);
        assert!(
            (implied - acc).abs() < 1e-9,
            "accuracy {acc} vs {implied} from P/R: {r}"
        );
        // The target learns: chance is 0.1.
        let train = r["target_train_accuracy"].as_f64().unwrap();
        let test = r["target_test_accuracy"].as_f64().unwrap();
        assert!(test > 0.3 && train > 0.4, "{r}");
    }
    // Longer training fits the training set better, for every model and κ.
    for pair in rows.chunks(2) {
        let acc = |r: &serde_json::Value| r["target_train_accuracy"].as_f64().unwrap();
        assert_eq!(
            (pair[0]["epochs"].as_u64(), pair[1]["epochs"].as_u64()),
            (Some(2), Some(4))
        );
        assert!(acc(&pair[1]) > acc(&pair[0]), "{pair:?}");
    }
    // LiRA, on the MLP only ([smoke.lira]: 4 models, 1 masked query): online and offline, clean
    // and masked queries, at both κ and both lengths.
    assert!(!out.join("lira_tpr_cnn-16-32.png").exists());
    let lira = csv_rows(&out.join("lira.csv"));
    assert_eq!(lira.len(), 2 * 2 * 4, "2 κ × 2 epoch counts × 4 readings");
    let num = |r: &std::collections::HashMap<String, String>, c: &str| -> f64 {
        r[c].parse().unwrap_or_else(|_| panic!("{c} in {r:?}"))
    };
    for r in &lira {
        assert_eq!(r["model"], "mlp-128");
        for rate in ["tpr_0_1pct", "tpr_1pct"] {
            let (lo, v, hi) = (
                num(r, &format!("{rate}_low")),
                num(r, rate),
                num(r, &format!("{rate}_high")),
            );
            assert!(0.0 <= lo && lo <= v && v <= hi && hi <= 1.0, "{r:?}");
        }
        // The LiRA models learn (chance is 0.1) on the half of the pool they train on.
        assert!(num(r, "test_accuracy") > 0.3, "{r:?}");
    }
    // Without a mask the masked query is the clean one; with it, the copies change the scores.
    let reading = |kappa: &str, epochs: &str, query: &str| {
        lira.iter()
            .find(|r| {
                (
                    r["kappa"].as_str(),
                    r["epochs"].as_str(),
                    r["query"].as_str(),
                    r["variant"].as_str(),
                ) == (kappa, epochs, query, "online")
            })
            .unwrap_or_else(|| panic!("no online {query} row at κ {kappa}, {epochs} epochs"))
    };
    for e in ["2", "4"] {
        assert_eq!(
            num(reading("0.0", e, "clean"), "auc"),
            num(reading("0.0", e, "masked"), "auc")
        );
        assert_ne!(
            num(reading("1.2", e, "clean"), "auc"),
            num(reading("1.2", e, "masked"), "auc")
        );
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn lira_smoke_run_scores_every_cell_both_ways() {
    let files = [
        "lira.csv",
        "summary.json",
        "roc.png",
        "roc.svg",
        "frontier.png",
        "frontier.svg",
        "run.json",
        "config.toml",
    ];
    let (root, _, _, s) = smoke_run("lira", &files);
    let rows: Vec<&serde_json::Value> = s["rows"].as_array().unwrap().iter().collect();
    // Cells κ = 0, 1 and DP-SGD σ = 1, each with clean and masked queries, online and offline,
    // and ML-Leaks on the same targets.
    assert_eq!(rows.len(), 3 * (2 * 2 + 1));
    assert_eq!(
        rows.iter().filter(|r| r["variant"] == "ml-leaks").count(),
        3
    );
    for r in &rows {
        let tpr = r["tpr_at_1pct"]["value"].as_f64().unwrap();
        let (lo, hi) = (
            r["tpr_at_1pct"]["low"].as_f64().unwrap(),
            r["tpr_at_1pct"]["high"].as_f64().unwrap(),
        );
        assert!(lo <= tpr && tpr <= hi, "{r}");
        let dp = r["defence"] == "dp-sgd";
        assert_eq!(r["epsilon"].is_f64(), dp, "{r}");
    }
    // The DP-SGD cell sits beside the mask cell of closest accuracy.
    let matched = s["matched"].as_array().unwrap();
    assert_eq!(matched.len(), 1);
    let accuracy = |defence: &str, strength: f64| {
        rows.iter()
            .find(|r| r["defence"] == defence && r["strength"].as_f64() == Some(strength))
            .unwrap()["test_accuracy"]
            .as_f64()
            .unwrap()
    };
    let dp = accuracy("dp-sgd", 1.0);
    let gap = |k: f64| (accuracy("mask", k) - dp).abs();
    let kappa = matched[0]["kappa"].as_f64().unwrap();
    assert!(
        [0.0, 1.0].iter().all(|&k| gap(kappa) <= gap(k)),
        "{matched:?}"
    );
    // MNIST by config (the data `.ci/run` installs): the same cells, other images.
    let (mnist, _, _, m) = smoke_run_with("lira", &["data.dataset=mnist"], &[]);
    assert_eq!(m["rows"].as_array().unwrap().len(), rows.len());
    assert_ne!(m["rows"], s["rows"], "MNIST gave Fashion-MNIST's numbers");
    std::fs::remove_dir_all(mnist).unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn dp_baseline_smoke_run_reports_epsilon_and_matches_accuracies() {
    let (root, _, _, s) = smoke_run("dp-baseline", &["defences.csv", "auc_vs_accuracy.png"]);
    let rows = s["rows"].as_array().unwrap();
    // σ = 1 and two κ, each at 1 and 2 epochs.
    assert_eq!(rows.len(), 6);
    let eps: Vec<f64> = rows
        .iter()
        .filter(|r| r["defence"] == "dp-sgd")
        .map(|r| r["epsilon"].as_f64().unwrap())
        .collect();
    assert_eq!(eps.len(), 2);
    assert!(
        eps[0] > 0.0 && eps[1] > eps[0],
        "ε grows with epochs: {eps:?}"
    );
    assert_eq!(s["matched"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn federated_fading_smoke_run_covers_both_tasks() {
    let files = [
        "rounds.csv",
        "image_vs_kappa.png",
        "regression_vs_kappa.png",
    ];
    let (root, _, _, s) = smoke_run("federated-fading", &files);
    let cells = s["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 2 * 2, "2 tasks × 2 κ × 2 client counts");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn bad_values_of_the_image_experiments_are_rejected_naming_the_field() {
    for (id, set, needle) in [
        ("image-accuracy", "kappas=[-1.0]", "kappas"),
        ("image-accuracy", "data.std_floor=0", "data.std_floor"),
        (
            "image-accuracy",
            "train.label_smoothing=1.0",
            "train.label_smoothing",
        ),
        ("membership-inference", "train.epochs=7", "train.epochs"),
        ("membership-inference", "epochs=[0]", "epochs"),
        ("membership-inference", "lira.models=3", "lira.models"),
        (
            "membership-inference",
            "lira.architectures=[\"mlp-64\"]",
            "lira.architectures",
        ),
        (
            "membership-inference",
            "lira.architectures=[\"mlp-128\", \"mlp-128\"]",
            "lira.architectures",
        ),
        ("membership-inference", "lira.shadows=4", "lira.shadows"),
        ("dp-baseline", "clip=0", "clip"),
        (
            "image-accuracy",
            "train.dp={clip=0.0,noise_multiplier=1.0}",
            "train.dp.clip",
        ),
        (
            "image-accuracy",
            "train.dp={clip=1.0,noise_multiplier=-1.0}",
            "train.dp.noise_multiplier",
        ),
        ("dp-baseline", "model.architecture=\"cnn\"", "train.dp"),
        (
            "dp-baseline",
            "model.mask.truncation=0.1",
            "model.mask.truncation",
        ),
        ("lira", "models=2", "models"),
        ("lira", "noise_multipliers=[0.0]", "noise_multipliers"),
        ("lira", "delta=1.5", "delta"),
        ("lira", "clip=0", "clip"),
        (
            "lira",
            "train.dp={clip=1.0,noise_multiplier=1.0}",
            "train.dp",
        ),
        // DP-SGD's per-sample gradients and batch norm do not mix: refused, not run.
        ("lira", "model.architecture=\"cnn\"", "train.dp"),
        ("federated-fading", "clients=[0]", "clients"),
        ("federated-fading", "regression.lr=0", "regression.lr"),
    ] {
        assert_rejected(&["run", id, "--smoke", "--set", set], needle);
    }
    // Sizes beyond the dataset are found once it is read: exit 2 naming the field, no result.
    for (id, set, needle) in [
        ("image-accuracy", "data.n_train=100000", "data.n_train"),
        (
            "membership-inference",
            "data.split_size=30000",
            "data.split_size",
        ),
    ] {
        let root = scratch("too-large");
        let out = root.join("run");
        let o = gaussmask(
            &[
                "run",
                id,
                "--smoke",
                "--set",
                set,
                "--out",
                out.to_str().unwrap(),
            ],
            &root,
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let last = stderr(&o).trim_end().lines().last().unwrap().to_string();
        assert!(
            last.starts_with("error: ") && last.contains(needle),
            "{last}"
        );
        assert!(!out.exists() && !root.join(".run.checkpoint").exists());
        std::fs::remove_dir_all(root).unwrap();
    }
    // A dataset folder without the files: the message gives the install command.
    assert_rejected(
        &[
            "run",
            "image-accuracy",
            "--smoke",
            "--set",
            "data.path=\"/nonexistent\"",
        ],
        "apt-get install -y dataset-fashion-mnist",
    );
}

/// Runs membership-inference (smoke, longer) in the background, interrupts it with SIGINT once
/// its first checkpoint exists, and returns the run directory it was writing.
fn interrupted_run(root: &Path) -> std::path::PathBuf {
    let out = root.join("run");
    let child = Command::new(BIN)
        .args([
            "run",
            "membership-inference",
            "--smoke",
            "--set",
            "epochs=[10, 30]",
            "--checkpoint-every",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .env_remove("RUST_BACKTRACE")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let folder = root.join(".run.checkpoint");
    let start = Instant::now();
    loop {
        let has_state = std::fs::read_dir(&folder)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "state"))
            })
            .unwrap_or(false);
        if has_state {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!out.exists(), "an interrupted run left a result");
    out
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_result() {
    let root = scratch("resume");
    let out = interrupted_run(&root);
    // A new run may not start over the interrupted one's checkpoint.
    let o = gaussmask(
        &[
            "run",
            "membership-inference",
            "--smoke",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = gaussmask(
        &[
            "run",
            "membership-inference",
            "--resume",
            out.to_str().unwrap(),
        ],
        &root,
    );
    assert_ok(&o);
    assert!(
        !root.join(".run.checkpoint").exists(),
        "checkpoint left after the run"
    );
    let whole = root.join("whole");
    let o = gaussmask(
        &[
            "run",
            "membership-inference",
            "--smoke",
            "--set",
            "epochs=[10, 30]",
            "--out",
            whole.to_str().unwrap(),
        ],
        &root,
    );
    assert_ok(&o);
    let resumed = std::fs::read_to_string(out.join("attack.csv")).unwrap();
    let uninterrupted = std::fs::read_to_string(whole.join("attack.csv")).unwrap();
    assert_eq!(resumed, uninterrupted);
    // Resuming a finished run, or a run that has no checkpoint, is refused.
    for target in [out.clone(), root.join("never")] {
        let o = gaussmask(
            &[
                "run",
                "membership-inference",
                "--resume",
                target.to_str().unwrap(),
            ],
            &root,
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn the_installed_datasets_load_with_their_published_sizes() {
    use gaussmask_data::images::ImageDataset;
    // Both datasets are published as 60 000 training and 10 000 test 28×28 grey images of 10
    // classes, every class present.
    for set in [ImageDataset::FashionMnist, ImageDataset::Mnist] {
        let (train, test) = set.load(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((train.n, test.n), (60_000, 10_000), "{set}");
        assert_eq!(
            (train.channels, train.height, train.width),
            (1, 28, 28),
            "{set}"
        );
        for class in 0..10u8 {
            assert!(
                train.labels.contains(&class) && test.labels.contains(&class),
                "{set}"
            );
        }
    }
}

#[test]
fn resume_errors_are_one_line_with_exit_2() {
    let root = scratch("resume-errors");
    let run = root.join("run");
    let run_s = run.to_str().unwrap();
    // --resume takes the run's own options.
    let o = gaussmask(
        &[
            "run",
            "membership-inference",
            "--resume",
            run_s,
            "--set",
            "seed=1",
        ],
        &root,
    );
    assert_one_line_error(&o, "drop --config");
    // No checkpoint there.
    let o = gaussmask(&["run", "membership-inference", "--resume", run_s], &root);
    assert_one_line_error(&o, "no checkpoint there");
    // A checkpoint of another experiment.
    let folder = root.join(".run.checkpoint");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("options.json"),
        r#"{"experiment":"dp-baseline","backend":"flex","dtype":"f32","smoke":true,"save_weights":false}"#,
    )
    .unwrap();
    std::fs::write(folder.join("config.toml"), "").unwrap();
    let o = gaussmask(&["run", "membership-inference", "--resume", run_s], &root);
    assert_one_line_error(&o, "not 'membership-inference'");
    // A new run over that leftover checkpoint.
    let o = gaussmask(
        &["run", "membership-inference", "--smoke", "--out", run_s],
        &root,
    );
    assert_one_line_error(&o, "--resume");
    // A corrupt options file.
    std::fs::write(folder.join("options.json"), "{").unwrap();
    let o = gaussmask(&["run", "membership-inference", "--resume", run_s], &root);
    assert_one_line_error(&o, "options.json");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_batch_larger_than_the_training_images_is_the_whole_set() {
    // 300 smoke images, batch 1000: one full-batch step an epoch, as before the generic trainer.
    let root = scratch("big-batch");
    let out = root.join("run");
    let o = gaussmask(
        &[
            "run",
            "image-accuracy",
            "--smoke",
            "--set",
            "train.batch_size=1000",
            "--set",
            "kappas=[0.5]",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("accuracy.csv").is_file());
    std::fs::remove_dir_all(root).unwrap();
}
