//! `gaussmask audit` as a user runs it, on `gaussmask train`'s config: it finds the members of
//! models that memorize, leaves its table and figures, refuses bad input as `train` does (one
//! line, exit 2, nothing written), and a run killed with SIGKILL resumes to the same bytes.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::checkpoints_cli::kill_after_first_checkpoints;
use crate::cli::{assert_ok, csv_rows, gaussmask, scratch, stderr};
use crate::reliability_cli::files;
use crate::train_cli::refused;

/// Rows of 6 inputs with labels of 4 classes drawn independently of them: nothing to learn,
/// everything to memorize.
fn random_labels_csv(rows: usize) -> String {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::from("a,b,c,d,e,f,label\n");
    for _ in 0..rows {
        for _ in 0..6 {
            text.push_str(&format!("{},", (next() % 2000) as f64 / 1000.0 - 1.0));
        }
        text.push_str(&format!("{}\n", next() % 4));
    }
    text
}

fn config(root: &Path) -> PathBuf {
    let csv = root.join("data.csv");
    std::fs::write(&csv, random_labels_csv(160)).unwrap();
    let path = root.join("audit.toml");
    std::fs::write(
        &path,
        format!(
            "[data]\nsource = \"csv\"\npath = \"{}\"\ntarget = \"label\"\n\
             task = \"classification\"\nvalidation = 0.2\n\
             [model]\nkind = \"mlp\"\nhidden = [64]\n[model.mask]\nkappa = [0.0, 1.0]\n\
             [train]\nepochs = 150\nbatch_size = 16\nlr = 0.01\nseeds = 2\n",
            csv.display()
        ),
    )
    .unwrap();
    path
}

/// `gaussmask audit --config <config> --out <out> <extra>...`.
fn audit_args<'a>(config: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "audit",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn audit(root: &Path, config: &Path, out: &Path, extra: &[&str]) -> Output {
    gaussmask(&audit_args(config, out, extra), root)
}

/// The rows of `audit.csv` as (header → value) maps.
fn table(run: &Path) -> Vec<std::collections::HashMap<String, String>> {
    csv_rows(&run.join("audit.csv"))
}

#[test]
fn audit_exposes_the_members_of_models_that_memorize_random_labels() {
    let root = scratch("audit-memorize");
    let config = config(&root);
    let run = root.join("run");
    let o = audit(&root, &config, &run, &["--shadows", "8"]);
    assert_ok(&o);
    let err = stderr(&o);
    // train.seeds is named as unused, and a successful run prints no error line.
    assert!(
        err.contains("warning: train.seeds = 2 is not used"),
        "{err}"
    );
    assert!(!err.lines().any(|l| l.starts_with("error")), "{err}");
    for file in [
        "audit.csv",
        "roc.svg",
        "roc.png",
        "frontier.svg",
        "run.json",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    let rows = table(&run);
    // κ ∈ {0, 1} × clean, masked queries × online, offline LiRA.
    assert_eq!(rows.len(), 8);
    let get = |r: &std::collections::HashMap<String, String>, k: &str| -> f64 {
        r[k].parse().unwrap_or_else(|_| panic!("{k} = {}", r[k]))
    };
    let unmasked = rows
        .iter()
        .find(|r| r["kappa"] == "0" && r["query"] == "clean" && r["variant"] == "online")
        .unwrap();
    // 8 targets × 64 members: far above the 1% a blind attack gets at 1% FPR.
    assert!(get(unmasked, "tpr_1pct_low") > 0.1, "{unmasked:?}");
    assert!(get(unmasked, "auc") > 0.8, "{unmasked:?}");
    // Random labels: the validation accuracy is chance (4 classes) within its noise.
    assert!(get(unmasked, "val_accuracy") < 0.5, "{unmasked:?}");
    // No DP: no noise and no ε.
    assert_eq!(unmasked["epsilon"], "");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn audit_refuses_bad_input_with_one_line_and_writes_nothing() {
    let root = scratch("audit-refused");
    let config = config(&root);
    let out = root.join("bad");
    for (extra, part) in [
        (
            &["--shadows", "3"][..],
            "audit.shadows (--shadows) must be ≥ 4",
        ),
        (
            &["--set", "audit.models=8"][..],
            "unknown field `models`, expected `shadows` or `queries` (at `audit.models`)",
        ),
        // train's config, train's line.
        (
            &["--set", "model.width=4"][..],
            "unknown field `width`, expected one of",
        ),
        (
            &["--set", "data.validation=0.0"][..],
            "data.validation must be > 0 for an audit",
        ),
        (
            &["--set", "train.dp={clip = 1.0}"][..],
            "(give one of them), got neither",
        ),
    ] {
        let line = refused(&audit(&root, &config, &out, extra));
        assert!(line.contains(part), "{extra:?}: {line}");
        assert!(!out.exists(), "{extra:?}");
    }
    // Too few rows to split into members and non-members: 4 rows, 1 held out for validation.
    let tiny = root.join("tiny.csv");
    std::fs::write(&tiny, random_labels_csv(4)).unwrap();
    let csv = root.join("data.csv");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(csv.to_str().unwrap(), tiny.to_str().unwrap());
    let small = root.join("small.toml");
    std::fs::write(&small, text).unwrap();
    let line = refused(&audit(&root, &small, &out, &[]));
    assert!(
        line.contains("data must be 4 or more training rows for an audit"),
        "{line}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_killed_audit_resumes_to_the_bytes_of_an_uninterrupted_one() {
    let root = scratch("audit-killed");
    let config = config(&root);
    let (out, whole) = (root.join("run"), root.join("whole"));
    let dp = "train.dp={clip = 1.0, noise_multiplier = 1.0}";
    let common = ["--shadows", "4", "--checkpoint-every", "20", "--set", dp];
    assert_ok(&audit(&root, &config, &whole, &common));
    let args = audit_args(&config, &out, &common);
    kill_after_first_checkpoints("audit", &args, &root.join(".run.checkpoint"));
    assert!(!out.exists());
    let line = refused(&gaussmask(
        &["audit", "--resume", out.to_str().unwrap(), "--shadows", "8"],
        &root,
    ));
    assert!(line.contains("drop --shadows"), "{line}");
    assert_ok(&gaussmask(
        &["audit", "--resume", out.to_str().unwrap()],
        &root,
    ));
    let (a, b) = (files(&whole), files(&out));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after the resume");
    }
    // Under DP-SGD every row carries the noise and its ε, as privacy.json does.
    let rows = table(&whole);
    assert!(rows.iter().all(|r| r["noise_multiplier"] == "1"));
    let privacy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("privacy.json")).unwrap()).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["epsilon"] == privacy["epsilon"].as_f64().unwrap().to_string())
    );
    assert!(!root.join(".run.checkpoint").exists());
    std::fs::remove_dir_all(root).unwrap();
}
