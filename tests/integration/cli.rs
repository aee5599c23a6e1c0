//! The command line as a user runs it: smoke runs, reproducibility, backends, and every
//! validation error (exit code 2, one line naming the field, nothing left behind).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_gaussmask-under-test");

/// A fresh, empty scratch directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gaussmask-test-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CLI with `args`, its default results folder `results`.
pub(crate) fn command(args: &[&str], results: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("GAUSSMASK_RESULTS", results)
        .env_remove("RUST_BACKTRACE");
    c
}

pub(crate) fn gaussmask(args: &[&str], results: &Path) -> Output {
    command(args, results).output().expect("the CLI starts")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// Smoke run of trajectories into `out`, with extra arguments.
fn trajectories_smoke(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "trajectories",
        "--smoke",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gaussmask(&args, out.parent().unwrap())
}

/// Runs `gaussmask run <id> --smoke` into a fresh directory, checks that it succeeded and wrote
/// `files`, and returns (scratch root, run directory, output, summary.json).
pub(crate) fn smoke_run(id: &str, files: &[&str]) -> (PathBuf, PathBuf, Output, serde_json::Value) {
    smoke_run_with(id, &[], files)
}

/// [`smoke_run`] with `--set` for each of `sets`.
pub(crate) fn smoke_run_with(
    id: &str,
    sets: &[&str],
    files: &[&str],
) -> (PathBuf, PathBuf, Output, serde_json::Value) {
    let root = scratch(id);
    let out = root.join("run");
    let mut args = vec!["run", id, "--smoke"];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(["--out", out.to_str().unwrap()]);
    let o = gaussmask(&args, &root);
    assert_ok(&o);
    for f in files
        .iter()
        .chain(&["summary.json", "config.toml", "run.json"])
    {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|_| panic!("{id}: {f} missing"));
        assert!(meta.len() > 0, "{id}: {f} is empty");
    }
    let summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    (root, out, o, summary)
}

/// The rows of a CSV file as (header → value) maps.
pub(crate) fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// (kappa, seed, step) → clean loss, from a trajectories.csv.
fn clean_losses(csv: &str) -> Vec<((String, String, String), f64)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (
                (c[0].into(), c[1].into(), c[2].into()),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

fn max_rel_diff(a: &str, b: &str) -> f64 {
    let (a, b) = (clean_losses(a), clean_losses(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|((ka, va), (kb, vb))| {
            assert_eq!(ka, kb);
            (va - vb).abs() / vb.abs().max(1e-12)
        })
        .fold(0.0, f64::max)
}

#[test]
fn trajectories_smoke_run_writes_every_file_and_floors_rise_with_kappa() {
    let root = scratch("traj");
    let out = root.join("run");
    let o = trajectories_smoke(&out, &[]);
    assert_ok(&o);
    for f in [
        "trajectories.csv",
        "summary.json",
        "trajectories.svg",
        "trajectories.png",
        "config.toml",
        "run.json",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    // No progress bar when stderr is not a terminal.
    assert!(!stderr(&o).contains("=>"), "{}", stderr(&o));
    // Table on stdout.
    assert!(String::from_utf8_lossy(&o.stdout).contains("final clean loss"));

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let finals: Vec<(f64, f64)> = summary["kappas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kappa"].as_f64().unwrap(),
                k["final_clean_mean"].as_f64().unwrap(),
            )
        })
        .collect();
    let kappas: Vec<f64> = finals.iter().map(|f| f.0).collect();
    assert_eq!(kappas, vec![0.0, 0.6, 2.0]);
    assert!(
        finals[0].1 < finals[1].1 && finals[1].1 < finals[2].1,
        "final clean loss must rise with κ: {finals:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["backend"], "flex");
    assert!(record["wall_time_s"].as_f64().unwrap() > 0.0);
    // The commit the binary was built from: this checkout's HEAD (cargo rebuilds when it moves).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        record["build_revision"].as_str(),
        Some(String::from_utf8_lossy(&head.stdout).trim()),
        "{record}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn same_config_gives_byte_identical_csv_on_flex() {
    let root = scratch("repro");
    let (a, b) = (root.join("a"), root.join("b"));
    assert_ok(&trajectories_smoke(&a, &[]));
    assert_ok(&trajectories_smoke(&b, &[]));
    let ca = std::fs::read(a.join("trajectories.csv")).unwrap();
    let cb = std::fs::read(b.join("trajectories.csv")).unwrap();
    assert!(ca == cb, "CSV differs between two identical runs");
    // A different seed gives a different run, so the equality above is not vacuous.
    let c = root.join("c");
    assert_ok(&trajectories_smoke(&c, &["--seed", "5"]));
    assert_ne!(ca, std::fs::read(c.join("trajectories.csv")).unwrap());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn replica_chunking_does_not_change_results() {
    let root = scratch("chunk");
    let (a, b) = (root.join("all"), root.join("one"));
    assert_ok(&trajectories_smoke(&a, &["--set", "replica_chunk=6"]));
    assert_ok(&trajectories_smoke(&b, &["--set", "replica_chunk=1"]));
    let ca = std::fs::read_to_string(a.join("trajectories.csv")).unwrap();
    let cb = std::fs::read_to_string(b.join("trajectories.csv")).unwrap();
    // f32 matmuls of a batch and of a single replica may round differently; 1e-5 covers that.
    assert!(max_rel_diff(&ca, &cb) < 1e-5);
    std::fs::remove_dir_all(root).unwrap();
}

fn compare_backend(backend: &str, feature_on: bool, steps: &str, tolerance: f64) {
    assert!(
        feature_on,
        "this test binary was built without the `{backend}` feature: run the tests with \
         `cargo test --release --workspace --all-features`"
    );
    let root = scratch(backend);
    let (a, b) = (root.join("flex"), root.join(backend));
    let set = format!("train.steps={steps}");
    assert_ok(&trajectories_smoke(&a, &["--set", &set]));
    assert_ok(&trajectories_smoke(
        &b,
        &["--set", &set, "--backend", backend],
    ));
    let ca = std::fs::read_to_string(a.join("trajectories.csv")).unwrap();
    let cb = std::fs::read_to_string(b.join("trajectories.csv")).unwrap();
    let diff = max_rel_diff(&cb, &ca);
    assert!(
        diff < tolerance,
        "{backend} vs flex: max relative difference {diff:e}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn ndarray_agrees_with_flex_on_a_short_run() {
    compare_backend("ndarray", cfg!(feature = "ndarray"), "60", 1e-4);
}

#[test]
fn wgpu_agrees_with_flex_on_a_short_run() {
    compare_backend("wgpu", cfg!(feature = "wgpu"), "40", 1e-4);
}

#[test]
fn smoothed_relu_smoke_run_writes_every_file_and_exact_matches_mc() {
    let files = [
        "smoothed_relu.csv",
        "smoothed_relu.svg",
        "smoothed_relu.png",
        "smoothed_relu_kappas.svg",
        "smoothed_relu_kappas.png",
    ];
    let (root, _, o, s) = smoke_run("smoothed-relu", &files);
    // 41 points: the largest of 41 |N(0,1)| draws exceeds 4.5 with probability < 3e-4.
    assert!(s["max_error_in_se_exact"].as_f64().unwrap() < 4.5, "{s}");
    // The proxy misses sφ(z/s) = 0.0798 at z = 0: hundreds of standard errors.
    assert!(s["max_error_in_se_proxy"].as_f64().unwrap() > 50.0, "{s}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("max |exact − MC|"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn smoothed_relu_on_the_spec_grid_is_within_five_standard_errors_of_monte_carlo() {
    // The full config is SPEC §2's reference experiment: κ = 0.2, s = 0.2, 400 points on
    // [−2.1, 2.1], 200 000 draws each (about a second).
    let root = scratch("srelu-full");
    let out = root.join("run");
    let o = gaussmask(
        &["run", "smoothed-relu", "--out", out.to_str().unwrap()],
        &root,
    );
    assert_ok(&o);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["points"], 400);
    assert_eq!(s["mc_samples"], 200_000);
    assert!(s["max_error_in_se_exact"].as_f64().unwrap() < 5.0, "{s}");
    assert!(s["max_error_in_se_proxy"].as_f64().unwrap() > 100.0, "{s}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn decomposition_smoke_run_writes_every_file_and_exact_is_inside_the_mc_interval() {
    let files = [
        "decomposition.csv",
        "decomposition.svg",
        "decomposition.png",
    ];
    let (root, _, _, s) = smoke_run("decomposition", &files);
    let mut inside = 0;
    let mut total = 0;
    for k in s.as_array().unwrap() {
        inside += k["exact_in_interval"].as_u64().unwrap();
        total += k["networks"].as_u64().unwrap();
        assert!(k["variance"].as_f64().unwrap() > 0.0);
        assert!(k["regularizer"].as_f64().unwrap() > 0.0);
    }
    // 4 (network, κ) pairs; each misses its 95% interval with probability 0.05.
    assert!(total == 4 && inside >= 3, "{s}");
    std::fs::remove_dir_all(root).unwrap();
}

/// Column `column` (as numbers) of the CSV rows whose first field is `first` and second `kappa`.
fn column_where(csv: &str, first: &str, kappa: f64, column: usize) -> Vec<f64> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[0] == first && c[1].parse::<f64>() == Ok(kappa))
        .map(|c| c[column].parse().unwrap())
        .collect()
}

#[test]
fn expected_objective_smoke_run_trains_every_objective() {
    let files = [
        "expected_objective.csv",
        "expected_objective_kappa0.4.png",
        "expected_objective_kappa1.svg",
    ];
    let (root, out, _, s) = smoke_run("expected-objective", &files);
    let objectives: Vec<&str> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["objective"].as_str().unwrap())
        .collect();
    let want = [
        "masked",
        "masked",
        "expected-exact",
        "expected-exact",
        "proxy",
        "proxy",
    ];
    assert_eq!(objectives, want);
    let csv = std::fs::read_to_string(out.join("expected_objective.csv")).unwrap();
    // Every objective lowers the clean loss from its start (same initial weights for all).
    for objective in ["masked", "expected-exact", "proxy"] {
        let losses = column_where(&csv, objective, 1.0, 4);
        assert!(
            losses.last().unwrap() < &(0.8 * losses[0]),
            "{objective}: {losses:?}"
        );
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn trajectories_with_diagnostics_writes_movement_flips_and_lambda0() {
    let root = scratch("diagnostics");
    let out = root.join("run");
    let o = trajectories_smoke(&out, &["--diagnostics", "every=50,gram"]);
    assert_ok(&o);
    let csv = std::fs::read_to_string(out.join("diagnostics.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    // Smoke: 3 κ × 2 seeds, steps 0, 50, 100, 150.
    assert_eq!(rows.len(), 3 * 2 * 4, "{csv}");
    for r in &rows {
        let (step, movement, flipped, lambda) = (r[2], r[3], r[4], r[5]);
        assert!((0.0..=1.0).contains(&flipped) && lambda >= -1e-9, "{r:?}");
        if step == 0.0 {
            assert_eq!((movement, flipped), (0.0, 0.0));
        } else {
            assert!(movement > 0.0, "{r:?}");
        }
    }
    let ntk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ntk.json")).unwrap()).unwrap();
    assert!(ntk["lambda0"].as_f64().unwrap() > 0.0, "{ntk}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn diagnostics_are_refused_where_nothing_trains_and_when_malformed() {
    assert_rejected(
        &[
            "run",
            "smoothed-relu",
            "--smoke",
            "--diagnostics",
            "every=5",
        ],
        "--diagnostics",
    );
    assert_rejected(
        &["run", "trajectories", "--smoke", "--diagnostics", "every=0"],
        "every must be an integer ≥ 1",
    );
}

#[test]
fn floor_scaling_smoke_run_fits_an_exponent_per_cell() {
    let files = ["floors.csv", "excess_floor_n32_tau1.png"];
    let (root, _, _, s) = smoke_run("floor-scaling", &files);
    let fits = s["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 2 * 2, "2 widths × 2 sample counts × 1 τ");
    for f in fits {
        let slope = f["fit"]["slope"]
            .as_f64()
            .expect("a fit in every smoke cell");
        assert!(slope.is_finite() && slope > 0.0, "{f}");
    }
    assert_eq!(s["lambda0"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn correlated_masks_smoke_run_compares_every_mode() {
    let files = ["correlated_masks.csv", "floor.png", "test_mse.png"];
    let (root, _, _, s) = smoke_run("correlated-masks", &files);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 * 2, "3 modes × 2 κ");
    // κ = 0 draws no mask: every mode trains the same run.
    let clean: Vec<f64> = rows
        .iter()
        .filter(|r| r["kappa"] == 0.0)
        .map(|r| r["floor"].as_f64().unwrap())
        .collect();
    assert!(clean.iter().all(|f| *f == clean[0]), "{clean:?}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn two_rates_smoke_run_measures_both_layers() {
    let (root, _, _, s) = smoke_run("two-rates", &["two_rates.csv", "loss_ratio_kappa0.png"]);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2, "2 widths × 2 ρ × 2 κ");
    for r in rows {
        let moved_a = r["movement_a"].as_f64().unwrap();
        if r["rho"] == 0.0 {
            assert_eq!(moved_a, 0.0, "{r}");
        } else {
            assert!(moved_a > 0.0, "{r}");
        }
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn identity_mapping_smoke_run_lowers_the_test_loss() {
    let files = ["identity_mapping.csv", "test_loss.png", "potential.png"];
    let (root, _, _, s) = smoke_run("identity-mapping", &files);
    let finals = s["finals"].as_array().unwrap();
    assert_eq!(finals.len(), 2 * 2, "2 networks × 2 κ");
    for f in finals {
        let (start, end) = (
            f["initial_test_loss"].as_f64().unwrap(),
            f["test_loss"][0].as_f64().unwrap(),
        );
        assert!(end < start, "{f}");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn masked_neurons_smoke_run_covers_every_scheme() {
    let files = [
        "masked_neurons.csv",
        "floor_bernoulli_kappa0.png",
        "floor_ist_kappa0.4.png",
    ];
    let (root, _, _, s) = smoke_run("masked-neurons", &files);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2 * 2, "2 schemes × 2 p × 2 τ × 2 κ");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn depth_smoke_run_trains_every_depth() {
    let files = ["depth.csv", "excess_floor.png", "trajectories_depth4.png"];
    let (root, out, _, s) = smoke_run("depth", &files);
    let fits = s["fits"].as_array().unwrap();
    let depths: Vec<u64> = fits.iter().map(|f| f["depth"].as_u64().unwrap()).collect();
    assert_eq!(depths, [2, 3, 4]);
    // Every depth lowers the clean loss of every replica.
    let csv = std::fs::read_to_string(out.join("depth.csv")).unwrap();
    for depth in ["2", "3", "4"] {
        let losses = column_where(&csv, depth, 0.0, 4);
        assert!(
            losses.last().unwrap() < &losses[0],
            "depth {depth}: {losses:?}"
        );
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn bad_values_of_the_probe_experiments_are_rejected_naming_the_field() {
    for (id, set, needle) in [
        ("floor-scaling", "kappas=[0.2, 0.4]", "kappas"),
        ("floor-scaling", "small_kappa_max=0", "small_kappa_max"),
        ("floor-scaling", "tail_fraction=0", "tail_fraction"),
        ("correlated-masks", "modes=[]", "modes"),
        ("correlated-masks", "n_test=0", "n_test"),
        (
            "two-rates",
            "model.train_output=false",
            "model.train_output",
        ),
        ("two-rates", "rhos=[-1.0]", "rhos"),
        ("identity-mapping", "lr=-1.0", "lr"),
        ("identity-mapping", "spectral_norm=0", "spectral_norm"),
        ("masked-neurons", "ps=[0]", "ps"),
        ("masked-neurons", "xi=1.5", "xi"),
        ("depth", "lrs=[0.1]", "lrs"),
        ("depth", "depths=[1, 2, 3]", "depths"),
        ("depth", "train.objective=\"proxy\"", "train.objective"),
        // Mask fields are named by the key the user wrote.
        (
            "trajectories",
            "model.mask.truncation=0.1",
            "model.mask.truncation",
        ),
        ("depth", "model.mask.keep_prob=0", "model.mask.keep_prob"),
    ] {
        assert_rejected(&["run", id, "--smoke", "--set", set], needle);
    }
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    use std::process::Stdio;
    let root = scratch("pipe");
    // The shell waits, so the pipe's reader is surely gone before the program writes.
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("sleep 0.3; exec '{BIN}' config trajectories"),
        ])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the program writes
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn list_names_every_experiment() {
    let root = scratch("list");
    let o = gaussmask(&["list"], &root);
    assert_ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    for id in [
        "trajectories",
        "smoothed-relu",
        "decomposition",
        "expected-objective",
        "floor-scaling",
        "correlated-masks",
        "two-rates",
        "identity-mapping",
        "masked-neurons",
        "depth",
        "image-accuracy",
        "membership-inference",
        "lira",
        "dp-baseline",
        "federated-fading",
    ] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
}

/// Exit 2 with one `error:` line containing `needle`.
pub(crate) fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

/// Runs a failing command and checks: exit 2, one line on stderr containing `needle`, and no
/// result (nor staging) directory left in `root`.
pub(crate) fn assert_rejected(args: &[&str], needle: &str) {
    let root = scratch("reject");
    let out = root.join("run");
    let mut full: Vec<&str> = args.to_vec();
    let out_s = out.to_str().unwrap().to_string();
    if !args.contains(&"--out") {
        full.extend(["--out", &out_s]);
    }
    let o = gaussmask(&full, &root);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "args {args:?}: stderr {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected, got:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(needle),
        "message should name `{needle}`: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.iter().all(|p| p.file_name().unwrap() == "blocker"),
        "left behind: {left:?}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn unknown_key_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--smoke", "--set", "train.lrr=0.1"],
        "lrr",
    );
}

#[test]
fn negative_kappa_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--set", "kappas=[0.2, -0.5]"],
        "kappas",
    );
}

#[test]
fn zero_width_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--set", "model.width=0"],
        "model.width",
    );
}

#[test]
fn fused_engine_with_an_optimizer_it_lacks_is_rejected() {
    assert_rejected(
        &[
            "run",
            "trajectories",
            "--set",
            "train.engine=host",
            "--set",
            "train.optimizer=adam",
        ],
        "train.engine",
    );
}

#[test]
fn unknown_engine_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--set", "train.engine=turbo"],
        "turbo",
    );
}

#[test]
fn bench_run_rejects_an_unknown_workload() {
    // Argument checks come before any build or timing, so this costs a Python start-up.
    let root = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new("python3")
        .arg(format!("{root}/../bench/run"))
        .args(["--workloads", "a,z", "--no-build"])
        .output()
        .expect("python3 runs bench/run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected, got:\n{err}"
    );
    assert!(err.contains("--workloads") && err.contains("'z'"), "{err}");
}

#[test]
fn nan_learning_rate_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--set", "train.lr=nan"],
        "train.lr",
    );
}

#[test]
fn adamw_for_the_two_layer_engines_is_rejected() {
    assert_rejected(
        &["run", "trajectories", "--set", "train.optimizer=\"adamw\""],
        "train.optimizer",
    );
}

#[test]
fn unreadable_config_file_is_rejected() {
    assert_rejected(
        &[
            "run",
            "trajectories",
            "--config",
            "/nonexistent/gaussmask.toml",
        ],
        "/nonexistent/gaussmask.toml",
    );
}

#[test]
fn invalid_toml_is_rejected() {
    let dir = scratch("badtoml");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "seeds = [\n").unwrap();
    assert_rejected(
        &["run", "trajectories", "--config", file.to_str().unwrap()],
        "bad.toml",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn analytic_experiment_configs_are_validated() {
    assert_rejected(
        &["run", "decomposition", "--set", "mc_samples=1"],
        "mc_samples",
    );
    assert_rejected(
        &["run", "decomposition", "--set", "sample_chunk=0"],
        "sample_chunk",
    );
    assert_rejected(
        &["run", "expected-objective", "--set", "objectives=[]"],
        "objectives",
    );
    assert_rejected(
        &[
            "run",
            "expected-objective",
            "--set",
            "objectives=[\"masked\", \"exactt\"]",
        ],
        "exactt",
    );
    assert_rejected(
        &["run", "trajectories", "--set", "train.exact_chunk=0"],
        "train.exact_chunk",
    );
    assert_rejected(
        &["run", "smoothed-relu", "--set", "curve_kappas=[-1.0]"],
        "curve_kappas",
    );
}

#[test]
fn unwritable_output_directory_is_rejected() {
    // A regular file where a directory should be: not writable even for root.
    let root = scratch("unwritable");
    let blocker = root.join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let out = blocker.join("run");
    let o = gaussmask(
        &[
            "run",
            "trajectories",
            "--smoke",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("blocker"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert_eq!(left.len(), 1, "only the blocker file remains");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn existing_result_is_never_overwritten() {
    let root = scratch("exists");
    let out = root.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "good result").unwrap();
    let o = trajectories_smoke(&out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "good result"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn unknown_experiment_and_bad_flags_are_one_line_errors() {
    assert_rejected(&["run", "trajectoriez"], "trajectoriez");
    assert_rejected(&["run", "trajectories", "--backend", "tpu"], "tpu");
    assert_rejected(&["run", "trajectories", "--set", "novalue"], "novalue");
}

#[test]
fn f64_on_wgpu_is_rejected() {
    assert_rejected(
        &[
            "run",
            "trajectories",
            "--smoke",
            "--backend",
            "wgpu",
            "--dtype",
            "f64",
        ],
        "--dtype f64",
    );
}

#[test]
fn f64_runs_on_the_cpu_backends() {
    let root = scratch("f64");
    let out = root.join("run");
    let o = trajectories_smoke(&out, &["--dtype", "f64", "--set", "train.steps=20"]);
    assert_ok(&o);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["dtype"], "f64");
    // f64 losses carry more than f32's 24 bits: some value is not an f32.
    let csv = std::fs::read_to_string(out.join("trajectories.csv")).unwrap();
    let not_f32 = |l: &str| {
        let v: f64 = l.split(',').nth(3).unwrap().parse().unwrap();
        v as f32 as f64 != v
    };
    assert!(csv.lines().skip(1).any(not_f32));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn divergence_names_the_step_and_leaves_nothing() {
    let root = scratch("diverge");
    let out = root.join("run");
    let o = trajectories_smoke(&out, &["--set", "train.lr=1e6"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("diverged at step"), "{err}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    std::fs::remove_dir_all(root).unwrap();
}

mod eval_loss {
    use super::*;
    use gaussmask_data::npy::{Array, encode};

    struct Files {
        root: PathBuf,
    }

    impl Files {
        fn path(&self, name: &str) -> String {
            self.root.join(name).to_str().unwrap().to_string()
        }
    }

    /// W [3, 2], a [3], X [4, 2], y [4].
    fn files() -> Files {
        let root = scratch("eval");
        let save = |name: &str, shape: Vec<usize>, data: Vec<f64>| {
            std::fs::write(root.join(name), encode(&Array { shape, data })).unwrap();
        };
        save("W.npy", vec![3, 2], vec![0.5, -1.0, 1.5, 0.3, -0.7, 0.8]);
        save("a.npy", vec![3], vec![1.0, -1.0, 1.0]);
        save(
            "X.npy",
            vec![4, 2],
            vec![0.6, 0.8, -1.0, 0.0, 0.0, 1.0, 0.28, -0.96],
        );
        save("y.npy", vec![4], vec![0.1, -0.2, 0.3, 0.05]);
        Files { root }
    }

    /// Runs eval-loss on the good files, with `extra` flags replacing a file flag when named.
    fn eval(f: &Files, extra: &[&str]) -> Output {
        let files = [
            ("--weights", f.path("W.npy")),
            ("--signs", f.path("a.npy")),
            ("--inputs", f.path("X.npy")),
            ("--targets", f.path("y.npy")),
        ];
        let mut args = vec!["eval-loss"];
        for (flag, path) in &files {
            if !extra.contains(flag) {
                args.extend([*flag, path.as_str()]);
            }
        }
        args.extend_from_slice(extra);
        gaussmask(&args, &f.root)
    }

    #[test]
    fn saved_weights_reload_into_eval_loss() {
        // Train κ = 0 with --save-weights, then evaluate the saved W and a at κ = 0 on the same
        // data: eval-loss's clean loss must equal the run's final clean loss.
        let root = scratch("saveweights");
        let out = root.join("run");
        let o = trajectories_smoke(
            &out,
            &[
                "--save-weights",
                "--set",
                "kappas=[0.0]",
                "--set",
                "seeds=1",
                "--dtype",
                "f64",
            ],
        );
        assert_ok(&o);
        for f in [
            "W_kappa0_seed0.npy",
            "a_kappa0_seed0.npy",
            "weights.safetensors",
        ] {
            assert!(out.join(f).exists(), "{f} missing");
        }
        // The smoke data (n = 64, d = 20, seed 0) as .npy.
        let data = gaussmask_data::SyntheticConfig {
            n: 64,
            ..gaussmask_data::SyntheticConfig::new(64, 20)
        }
        .generate();
        std::fs::write(
            root.join("X.npy"),
            encode(&Array {
                shape: vec![64, 20],
                data: data.x,
            }),
        )
        .unwrap();
        std::fs::write(
            root.join("y.npy"),
            encode(&Array {
                shape: vec![64],
                data: data.y,
            }),
        )
        .unwrap();
        let p = |n: &str| out.join(n).to_str().unwrap().to_string();
        let (x, y) = (root.join("X.npy"), root.join("y.npy"));
        let args = [
            "eval-loss",
            "--weights",
            &p("W_kappa0_seed0.npy"),
            "--signs",
            &p("a_kappa0_seed0.npy"),
            "--inputs",
            x.to_str().unwrap(),
            "--targets",
            y.to_str().unwrap(),
            "--kappa",
            "0",
        ];
        let e = gaussmask(&args, &root);
        assert_ok(&e);
        let r: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        let csv = std::fs::read_to_string(out.join("trajectories.csv")).unwrap();
        let last: f64 = csv
            .lines()
            .last()
            .unwrap()
            .split(',')
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        let clean = r["clean"].as_f64().unwrap();
        assert!(
            (clean - last).abs() <= 1e-10 * last,
            "eval-loss {clean} vs run {last}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn reports_every_term_matching_the_scalar_references() {
        let f = files();
        let o = eval(&f, &["--kappa", "0.4", "--mc-samples", "5000"]);
        assert_ok(&o);
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let (w, a): ([f64; 6], [f64; 3]) = ([0.5, -1.0, 1.5, 0.3, -0.7, 0.8], [1.0, -1.0, 1.0]);
        let x: [[f64; 2]; 4] = [[0.6, 0.8], [-1.0, 0.0], [0.0, 1.0], [0.28, -0.96]];
        let y = [0.1, -0.2, 0.3, 0.05];
        let (mut clean, mut exact) = (0.0, 0.0);
        for (xi, yi) in x.iter().zip(y) {
            let f: f64 = (0..3)
                .map(|r| a[r] * (w[2 * r] * xi[0] + w[2 * r + 1] * xi[1]).max(0.0))
                .sum::<f64>()
                / 3f64.sqrt();
            clean += 0.5 * (f - yi).powi(2);
            let (ft, v) = gaussmask_smooth::smoothed_output_and_variance(&w, &a, xi, 0.4);
            exact += 0.5 * ((ft - yi).powi(2) + v);
        }
        assert!((r["clean"].as_f64().unwrap() - clean).abs() < 1e-12);
        assert!((r["exact"].as_f64().unwrap() - exact).abs() < 1e-10);
        let mc = &r["mc_masked"];
        assert!((mc["mean"].as_f64().unwrap() - exact).abs() < 5.0 * mc["se"].as_f64().unwrap());
        for key in [
            "proxy",
            "regularizer",
            "variance",
            "link",
            "smoothed_sse",
            "proxy_sse",
        ] {
            assert!(r[key].as_f64().is_some(), "{key} missing");
        }
        std::fs::remove_dir_all(&f.root).unwrap();
    }

    fn rejected(f: &Files, extra: &[&str], needle: &str) {
        let o = eval(f, extra);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let f = files();
        // Wrong shape: W saved as 1-D.
        std::fs::write(
            f.root.join("W1.npy"),
            encode(&Array {
                shape: vec![6],
                data: vec![0.0; 6],
            }),
        )
        .unwrap();
        let w1 = f.path("W1.npy");
        rejected(
            &f,
            &["--kappa", "0.4", "--weights", &w1],
            "W1.npy: W must be a 2-D array",
        );
        // Wrong dtype: complex64 (same bytes, the header's '<f8' changed to '<c8').
        let mut complex = std::fs::read(f.root.join("a.npy")).unwrap();
        let at = complex.windows(3).position(|w| w == b"<f8").unwrap();
        complex[at + 1] = b'c';
        std::fs::write(f.root.join("a_complex.npy"), complex).unwrap();
        let ac = f.path("a_complex.npy");
        rejected(
            &f,
            &["--kappa", "0.4", "--signs", &ac],
            "'<c8' is not supported",
        );
        // Truncated.
        let good = std::fs::read(f.root.join("X.npy")).unwrap();
        std::fs::write(f.root.join("X_cut.npy"), &good[..good.len() - 5]).unwrap();
        let xc = f.path("X_cut.npy");
        rejected(
            &f,
            &["--kappa", "0.4", "--inputs", &xc],
            "X_cut.npy: truncated",
        );
        // Mismatched n.
        std::fs::write(
            f.root.join("y5.npy"),
            encode(&Array {
                shape: vec![5],
                data: vec![0.0; 5],
            }),
        )
        .unwrap();
        let y5 = f.path("y5.npy");
        rejected(
            &f,
            &["--kappa", "0.4", "--targets", &y5],
            "y5.npy has 5 values",
        );
        // Not a .npy file at all, and a missing one.
        std::fs::write(f.root.join("junk.npy"), b"hello").unwrap();
        let junk = f.path("junk.npy");
        rejected(&f, &["--kappa", "0.4", "--weights", &junk], "bad magic");
        rejected(
            &f,
            &["--kappa", "0.4", "--weights", "/nonexistent/W.npy"],
            "/nonexistent/W.npy",
        );
        rejected(&f, &["--kappa", "-1"], "--kappa");
        rejected(
            &f,
            &["--kappa", "0.4", "--sample-chunk", "0"],
            "--sample-chunk",
        );
        std::fs::remove_dir_all(&f.root).unwrap();
    }
}
