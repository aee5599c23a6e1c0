//! Nothing lost, nothing silently wrong, through the command line:
//!
//! - every write of a run's life (unit file, training state, each result file, the final
//!   rename) fails in turn (the binary under test is built with the harness's
//!   `fault-injection` feature): the run exits 1 naming the file, keeps its finished work and
//!   says how to continue, and `--resume` then ends with the bytes of an uninterrupted run;
//! - processes racing for one run directory: exactly one proceeds, the others are refused
//!   (exit 2) naming the live pid, and nothing but the result is left;
//! - random values in every config field: exit 0, 1 or 2, never a panic, never exit 0 with a
//!   non-finite number in an output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::checkpoints_cli::kill_after_first_checkpoints;
use crate::cli::{BIN, assert_ok, gaussmask, scratch, stderr};

/// A regression table with a learnable target.
fn table(rows: usize) -> String {
    let mut text = String::from("a,b,y\n");
    for i in 0..rows {
        let (a, b) = ((i as f64 * 0.37).sin(), (i as f64 * 0.91).cos());
        text.push_str(&format!("{a},{b},{}\n", 3.0 * a - 2.0 * b));
    }
    text
}

/// A `gaussmask train` config over `csv`: three κ, several checkpoints per model.
fn train_config(root: &Path) -> PathBuf {
    let csv = root.join("data.csv");
    std::fs::write(&csv, table(120)).unwrap();
    let config = root.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 1\n[data]\nsource = \"csv\"\npath = \"{}\"\ntarget = \"y\"\n\
             [model]\nkind = \"two-layer\"\nwidth = 8\n[model.mask]\nkappa = [0.0, 0.3, 0.6]\n\
             [train]\nepochs = 6\nbatch_size = 16\nlr = 0.01\n",
            csv.display()
        ),
    )
    .unwrap();
    config
}

/// The command line under test with `args`, its results under `root`, no fault injected.
fn cli(args: &[&str], root: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("GAUSSMASK_RESULTS", root)
        .env_remove("RUST_BACKTRACE")
        .env_remove("GAUSSMASK_FAIL_WRITE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_with(args: &[&str], root: &Path, fault: Option<&str>) -> Output {
    let mut c = cli(args, root);
    if let Some(f) = fault {
        c.env("GAUSSMASK_FAIL_WRITE", f);
    }
    c.output().unwrap()
}

/// Every file under `dir` but `run.json` (wall time, command line), by relative path; the
/// wall times in a JSON summary (`…time_s`, `seconds`) are left out.
pub(crate) fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "run.json" {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                let mut bytes = std::fs::read(&p).unwrap();
                if rel.ends_with(".json") {
                    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    drop_times(&mut value);
                    bytes = value.to_string().into_bytes();
                }
                out.push((rel, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Removes the wall times from a JSON value.
fn drop_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !gaussmask_harness::records::is_wall_time(k));
            map.values_mut().for_each(drop_times);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_times),
        _ => {}
    }
}

fn assert_same_files(what: &str, a: &Path, b: &Path) {
    let (a, b) = (files(a), files(b));
    let rel = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(rel(&a), rel(&b), "{what}");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{what}: {name} differs");
    }
}

/// Names in `dir`, sorted.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether a line of stderr is one of our error lines.
fn is_error(line: &str) -> bool {
    line.starts_with("error:") && !line.contains("XDG_RUNTIME_DIR")
}

/// The one error line of a failed command.
fn error_line(o: &Output) -> String {
    let err = stderr(o);
    // The Vulkan loader's complaint about XDG_RUNTIME_DIR is no error of ours.
    let lines: Vec<&str> = err.lines().filter(|l| is_error(l)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// Fails `fault` in a run of `args` into `out`, resumes it, and compares with `whole`.
fn fail_then_resume(
    what: &str,
    args: &[&str],
    resume: &[&str],
    root: &Path,
    out: &Path,
    whole: &Path,
    fault: &str,
) {
    let o = run_with(args, root, Some(fault));
    assert_eq!(o.status.code(), Some(1), "{what} {fault}: {}", stderr(&o));
    let line = error_line(&o);
    assert!(line.contains("injected"), "{what} {fault}: {line}");
    assert!(
        !out.exists(),
        "{what} {fault}: a result despite the failure"
    );
    let folder = root.join(format!(
        ".{}.checkpoint",
        out.file_name().unwrap().to_string_lossy()
    ));
    assert!(
        folder.is_dir(),
        "{what} {fault}: the finished work is gone ({line})"
    );
    assert!(
        line.contains(&format!("--resume {}", out.display())),
        "{what} {fault}: {line}"
    );
    let o = run_with(resume, root, None);
    assert_ok(&o);
    assert_same_files(&format!("{what} after {fault}"), whole, out);
    assert!(
        !folder.exists(),
        "{what} {fault}: the checkpoint outlived the result"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn every_write_of_a_train_run_can_fail_and_resume_ends_byte_identical() {
    let root = scratch("faults-train");
    let config = train_config(&root);
    let whole = root.join("whole");
    let c = config.to_str().unwrap();
    assert_ok(&run_with(
        &["train", "--config", c, "--out", whole.to_str().unwrap()],
        &root,
        None,
    ));
    let out = root.join("run");
    let o = out.to_str().unwrap();
    let args = [
        "train",
        "--config",
        c,
        "--out",
        o,
        "--checkpoint-every",
        "10",
    ];
    // The second unit file, the third training state, each result file, the final rename.
    for fault in [
        ".done.ron#2",
        ".state#3",
        "metrics.csv",
        "summary.csv",
        "model.bpk#3",
        "model.safetensors",
        "model.json",
        "learning_curve.svg",
        "run.json",
        "@commit",
    ] {
        fail_then_resume(
            "train",
            &args,
            &["train", "--resume", o],
            &root,
            &out,
            &whole,
            fault,
        );
    }
    assert_eq!(names(&root), ["data.csv", "train.toml", "whole"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn every_write_of_a_study_run_can_fail_and_resume_ends_byte_identical() {
    let root = scratch("faults-study");
    let whole = root.join("whole");
    assert_ok(&run_with(
        &[
            "run",
            "trajectories",
            "--smoke",
            "--out",
            whole.to_str().unwrap(),
        ],
        &root,
        None,
    ));
    let out = root.join("run");
    let o = out.to_str().unwrap();
    for fault in [".done.ron#2", "trajectories.csv", "summary.json", "@commit"] {
        fail_then_resume(
            "trajectories",
            &["run", "trajectories", "--smoke", "--out", o],
            &["run", "trajectories", "--resume", o],
            &root,
            &out,
            &whole,
            fault,
        );
    }
    assert_eq!(names(&root), ["whole"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_federated_run_resumes_from_its_last_saved_round() {
    // Three rounds save after rounds 1 and 2; failing the second save leaves round 1's global
    // model and history, from which --resume must continue to the uninterrupted bytes.
    let root = scratch("faults-rounds");
    let whole = root.join("whole");
    fn args(out: &Path) -> [&str; 7] {
        let out = out.to_str().unwrap();
        let rounds = "image.rounds=3";
        [
            "run",
            "federated-fading",
            "--smoke",
            "--set",
            rounds,
            "--out",
            out,
        ]
    }
    assert_ok(&run_with(&args(&whole), &root, None));
    let out = root.join("run");
    fail_then_resume(
        "federated-fading",
        &args(&out),
        &["run", "federated-fading", "--resume", out.to_str().unwrap()],
        &root,
        &out,
        &whole,
        "image-k1-c3.state#2",
    );
    assert_eq!(names(&root), ["whole"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_failure_before_any_finished_work_leaves_nothing_not_even_new_parent_folders() {
    let root = scratch("faults-nothing");
    let out = root.join("a/b/run");
    let o = run_with(
        &[
            "run",
            "trajectories",
            "--smoke",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
        Some(".done.ron"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!error_line(&o).contains("--resume"));
    assert!(names(&root).is_empty(), "left: {:?}", names(&root));
    std::fs::remove_dir_all(root).unwrap();
}

/// Starts `n` copies of `args` at once and waits for them all.
fn race(args: &[&str], root: &Path, n: usize) -> Vec<(u32, Output)> {
    let children: Vec<_> = (0..n).map(|_| cli(args, root).spawn().unwrap()).collect();
    children
        .into_iter()
        .map(|c| (c.id(), c.wait_with_output().unwrap()))
        .collect()
}

/// Exactly one of `outcomes` succeeded; every other was refused with exit 2, and one that
/// names a pid names the winner's.
fn exactly_one_wins(what: &str, outcomes: &[(u32, Output)]) {
    let winners: Vec<u32> = outcomes
        .iter()
        .filter(|(_, o)| o.status.success())
        .map(|(pid, _)| *pid)
        .collect();
    assert_eq!(winners.len(), 1, "{what}: {} winners", winners.len());
    for (_, o) in outcomes.iter().filter(|(_, o)| !o.status.success()) {
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(o));
        let line = error_line(o);
        if line.contains("another gaussmask process (pid") {
            assert!(
                line.contains(&format!("(pid {})", winners[0])),
                "{what}: names another pid than the winner {}: {line}",
                winners[0]
            );
        } else {
            // Started after the winner was done.
            assert!(
                line.contains("already exists") || line.contains("already complete"),
                "{what}: {line}"
            );
        }
    }
}

#[test]
fn processes_racing_for_one_run_directory_let_exactly_one_proceed() {
    let root = scratch("race");
    let config = train_config(&root);
    let c = config.to_str().unwrap();
    let whole = root.join("whole");
    assert_ok(&gaussmask(
        &["train", "--config", c, "--out", whole.to_str().unwrap()],
        &root,
    ));
    for trial in 0..4 {
        // Fresh runs with one --out.
        let out = root.join(format!("fresh{trial}"));
        let o = out.to_str().unwrap();
        exactly_one_wins(
            "fresh",
            &race(&["train", "--config", c, "--out", o], &root, 4),
        );
        assert_same_files("fresh", &whole, &out);
        // Resumes of one killed run.
        let out = root.join(format!("killed{trial}"));
        let o = out.to_str().unwrap();
        let folder = root.join(format!(".killed{trial}.checkpoint"));
        kill_after_first_checkpoints(
            "train",
            &[
                "train",
                "--config",
                c,
                "--out",
                o,
                "--checkpoint-every",
                "10",
            ],
            &folder,
        );
        exactly_one_wins("resume", &race(&["train", "--resume", o], &root, 4));
        assert_same_files("resume", &whole, &out);
    }
    let mut expected = vec!["data.csv".to_string(), "train.toml".into(), "whole".into()];
    for t in 0..4 {
        expected.extend([format!("fresh{t}"), format!("killed{t}")]);
    }
    expected.sort();
    assert_eq!(names(&root), expected, "leftovers beside the results");
    std::fs::remove_dir_all(root).unwrap();
}

/// A tiny deterministic generator (the cases must be the same in every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// TOML values of every type, the troublesome ones first.
const VALUES: &[&str] = &[
    "1e308",
    "-1e308",
    "1e-300",
    "1e30",
    "-1",
    "0",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "\"nan\"",
    "\"\"",
    "\"x\"",
    "[]",
    "[0.5, 0.5]",
    "[0, -0.0]",
    "[1e308]",
    "[\"a\"]",
    "true",
    "{}",
    "9223372036854775807",
    "-9223372036854775808",
    "0.5",
    "3",
    "1000000",
];

/// Every leaf key of a TOML table, dotted (the `[smoke]` section left out).
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        if prefix.is_empty() && k == "smoke" {
            continue;
        }
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaves(t, &key, out),
            _ => out.push(key),
        }
    }
}

/// Runs `args` and waits at most `limit` for it: `None` (the process killed) if it ran longer.
fn within(args: &[&str], root: &Path, limit: std::time::Duration) -> Option<Output> {
    let mut child = cli(args, root).spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Some(child.wait_with_output().unwrap())
}

/// Whether a CSV or JSON text holds a non-finite number. (JSON's `null` is an absent value
/// here: the harness refuses to write a non-finite number as JSON, see its unit test.)
fn non_finite(text: &str) -> bool {
    text.split([',', '\n', ' ', ':', '[', ']'])
        .map(|t| t.trim().trim_matches('"'))
        .any(|t| {
            matches!(
                t.to_ascii_lowercase().as_str(),
                "nan" | "inf" | "-inf" | "infinity" | "-infinity"
            )
        })
}

/// The first CSV or JSON output of the run in `dir` that holds a non-finite number.
fn non_finite_output(dir: &Path) -> Option<String> {
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".csv") || name.ends_with(".json"))
        .find(|(_, bytes)| non_finite(&String::from_utf8_lossy(bytes)))
        .map(|(name, _)| name)
}

#[test]
fn random_values_in_every_config_field_never_panic_nor_succeed_with_non_finite_output() {
    let root = scratch("config-space");
    let mut rng = Lcg(2026);
    let mut seen = [0usize; 3];
    let mut succeeded = Vec::new();
    let mut failures = Vec::new();
    let mut slow = Vec::new();
    for (experiment, base, cases) in [
        ("trajectories", vec!["run", "trajectories", "--smoke"], 200),
        ("train", vec!["train"], 200),
        ("audit", vec!["audit"], 60),
        ("decomposition", vec!["run", "decomposition", "--smoke"], 60),
        ("two-rates", vec!["run", "two-rates", "--smoke"], 60),
        ("depth", vec!["run", "depth", "--smoke"], 60),
        (
            "masked-neurons",
            vec!["run", "masked-neurons", "--smoke"],
            60,
        ),
    ] {
        let text = String::from_utf8(gaussmask(&["config", experiment], &root).stdout).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys = Vec::new();
        leaves(&table, "", &mut keys);
        for case in 0..cases {
            let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            // Small, fast trainings, so that cases which pass validation finish quickly.
            // (The default model is the two-layer network: `model.hidden` would be refused.)
            let small: &[&str] = match experiment {
                "train" => &["data.synthetic.n=60", "train.epochs=2", "model.width=8"],
                "audit" => &[
                    "data.synthetic.n=60",
                    "train.epochs=2",
                    "model.width=8",
                    "audit.shadows=4",
                ],
                _ => &[],
            };
            args.extend(
                small
                    .iter()
                    .flat_map(|s| ["--set".to_string(), s.to_string()]),
            );
            let mut set = Vec::new();
            for _ in 0..1 + rng.below(2) {
                let key = &keys[rng.below(keys.len())];
                let value = VALUES[rng.below(VALUES.len())];
                set.push(format!("{key}={value}"));
            }
            for s in &set {
                args.extend(["--set".to_string(), s.clone()]);
            }
            let out = root.join(format!("{experiment}-{case}"));
            args.extend(["--out".to_string(), out.display().to_string()]);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let what = format!("{experiment} {set:?}");
            // A value can make a run legitimately long (a million seeds): it is stopped, and
            // only what it printed or left so far is judged.
            let Some(o) = within(&refs, &root, std::time::Duration::from_secs(20)) else {
                slow.push(what);
                let _ = std::fs::remove_dir_all(&out);
                continue;
            };
            let code = o.status.code().unwrap_or(-1);
            let err = stderr(&o);
            if !matches!(code, 0..=2) || err.contains("internal error") || err.contains("panicked")
            {
                failures.push(format!("{what}: exit {code}: {err}"));
                continue;
            }
            seen[code as usize] += 1;
            if code == 0 {
                succeeded.push(experiment);
                if let Some(file) = non_finite_output(&out) {
                    failures.push(format!("{what}: exit 0 with a non-finite number in {file}"));
                }
                std::fs::remove_dir_all(&out).unwrap();
            } else if err.lines().filter(|l| is_error(l)).count() != 1 || out.exists() {
                failures.push(format!("{what}: not one error line, or a result: {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each stopped case costs its time limit: they must stay the exception.
    assert!(slow.len() <= 12, "{} cases ran long: {slow:?}", slow.len());
    // The grid reaches both sides of the validation, and the commands with many cases succeed
    // somewhere (a base config that is itself refused would test nothing).
    assert!(seen[0] > 0 && seen[2] > 0, "outcomes {seen:?}");
    for experiment in ["trajectories", "train", "audit"] {
        assert!(
            succeeded.contains(&experiment),
            "{experiment}: no case succeeded"
        );
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_tampered_unit_or_state_file_is_refused_naming_it_and_never_used() {
    let root = scratch("tampered");
    let config = train_config(&root);
    let c = config.to_str().unwrap();
    let out = root.join("run");
    let o = out.to_str().unwrap();
    let folder = root.join(".run.checkpoint");
    let args = [
        "train",
        "--config",
        c,
        "--out",
        o,
        "--checkpoint-every",
        "10",
    ];
    kill_after_first_checkpoints("train", &args, &folder);
    let file_of = |suffix: &str| {
        std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    let (unit, state) = (file_of(".done.ron"), file_of(".state"));
    let (unit_bytes, state_bytes) = (
        std::fs::read(&unit).unwrap(),
        std::fs::read(&state).unwrap(),
    );
    // One digit of a finished unit's metrics, then a byte of a training state.
    let text = String::from_utf8(unit_bytes.clone()).unwrap();
    let at = text.find("train_loss:").unwrap() + "train_loss:".len();
    let digit = text[at..].find(|c: char| c.is_ascii_digit()).unwrap() + at;
    let mut edited = text.into_bytes();
    edited[digit] = if edited[digit] == b'7' { b'8' } else { b'7' };
    std::fs::write(&unit, &edited).unwrap();
    let resume = ["train", "--resume", o];
    let r = gaussmask(&resume, &root);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let line = error_line(&r);
    assert!(
        line.contains(&*unit.to_string_lossy()) && line.contains("checksum"),
        "{line}"
    );
    std::fs::write(&unit, &unit_bytes).unwrap();
    let mut damaged = state_bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x10;
    std::fs::write(&state, &damaged).unwrap();
    let r = gaussmask(&resume, &root);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    let line = error_line(&r);
    assert!(
        line.contains(&*state.to_string_lossy()) && line.contains("checksum"),
        "{line}"
    );
    // Restored, the run resumes.
    std::fs::write(&state, &state_bytes).unwrap();
    assert_ok(&gaussmask(&resume, &root));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn kappa_grids_are_checked_up_front_and_named_by_their_shortest_form() {
    let root = scratch("kappas");
    let config = train_config(&root);
    let c = config.to_str().unwrap();
    for (value, needle) in [
        ("[0.5, 0.5]", "0.5 twice"),
        ("[0.0, -0.0]", "0 twice"),
        ("1e30", "got 1e30"),
        ("[0.2, 1e7]", "got 1e7"),
        ("-1", "got -1"),
        ("[]", "non-empty"),
    ] {
        let set = format!("model.mask.kappa={value}");
        let o = gaussmask(
            &["train", "--config", c, "--set", &set, "--out", "x"],
            &root,
        );
        assert_eq!(o.status.code(), Some(2), "{value}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(
            line.contains("model.mask.kappa") && line.contains(needle),
            "{line}"
        );
        for (id, field) in [("trajectories", "kappas"), ("image-accuracy", "kappas")] {
            let set = format!("kappas={value}");
            let o = gaussmask(&["run", id, "--smoke", "--set", &set, "--out", "x"], &root);
            if value == "-1" || value == "1e30" {
                // A number where a list belongs: refused as a type error.
                assert_eq!(o.status.code(), Some(2), "{id} {value}");
                continue;
            }
            assert_eq!(o.status.code(), Some(2), "{id} {value}: {}", stderr(&o));
            let line = error_line(&o);
            assert!(
                line.contains(field) && line.contains(needle),
                "{id}: {line}"
            );
        }
    }
    // A tiny κ trains and is named by its shortest form (not 300 digits).
    let out = root.join("tiny");
    assert_ok(&gaussmask(
        &[
            "train",
            "--config",
            c,
            "--set",
            "model.mask.kappa=[0, 1e-300]",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    ));
    assert_eq!(
        names(&out.join("models")),
        ["kappa-0-seed-1", "kappa-1e-300-seed-1"]
    );
    // eval-loss: the same range.
    let o = gaussmask(
        &[
            "eval-loss",
            "--weights",
            "W.npy",
            "--signs",
            "a.npy",
            "--inputs",
            "X.npy",
            "--targets",
            "y.npy",
            "--kappa",
            "1e308",
        ],
        &root,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(error_line(&o).contains("--kappa must be"), "{}", stderr(&o));
    assert_eq!(names(&root), ["data.csv", "tiny", "train.toml"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn predictions_are_finite_or_refused_and_a_damaged_model_is_never_used() {
    let root = scratch("predict-trust");
    let config = train_config(&root);
    let out = root.join("run");
    assert_ok(&gaussmask(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--set",
            "model.mask.kappa=0.3",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    ));
    let run = out.to_str().unwrap();
    let predict = |inputs: &Path| {
        gaussmask(
            &[
                "predict",
                "--model",
                run,
                "--inputs",
                inputs.to_str().unwrap(),
            ],
            &root,
        )
    };
    let good = root.join("good.csv");
    std::fs::write(&good, "a,b\n0.1,0.2\n0.3,-0.4\n").unwrap();
    let expected = predict(&good);
    assert_ok(&expected);
    // An input that overflows f32 once standardized: an error naming the row.
    let huge = root.join("huge.csv");
    std::fs::write(&huge, "a,b\n0.1,0.2\n1e39,0.5\n").unwrap();
    let o = predict(&huge);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(
        line.contains("huge.csv") && line.contains("row 2"),
        "{line}"
    );
    assert!(o.stdout.is_empty());
    // One flipped byte in the weights' record, then in the safetensors file listed beside it.
    let bpk = out.join("models/kappa-0.3-seed-1/model.bpk");
    let bytes = std::fs::read(&bpk).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&bpk, &flipped).unwrap();
    let o = predict(&good);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(
        line.contains("model.bpk") && line.contains("checksum"),
        "{line}"
    );
    std::fs::write(&bpk, &bytes).unwrap();
    assert_eq!(predict(&good).stdout, expected.stdout);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn data_files_in_another_format_get_the_hint_that_fixes_them() {
    let root = scratch("data-hints");
    let run = |name: &str, bytes: &[u8], extra: &str| {
        let path = root.join(name);
        std::fs::write(&path, bytes).unwrap();
        let config = root.join("c.toml");
        std::fs::write(
            &config,
            format!(
                "[data]\nsource = \"csv\"\npath = \"{}\"\ntarget = \"y\"\n{extra}\
                 [train]\nepochs = 1\n[model]\nhidden = [4]\n",
                path.display()
            ),
        )
        .unwrap();
        gaussmask(
            &[
                "train",
                "--config",
                config.to_str().unwrap(),
                "--out",
                root.join("out").to_str().unwrap(),
            ],
            &root,
        )
    };
    let gz = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3];
    let o = run("data.csv.gz", &gz, "");
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("gzip-compressed"), "{}", stderr(&o));
    let o = run("semi.csv", table(30).replace(',', ";").as_bytes(), "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        error_line(&o).contains("set data.delimiter = \";\""),
        "{}",
        stderr(&o)
    );
    // An all-empty column is said to be empty, not text.
    let mut text = String::from("a,b,e,y\n");
    for line in table(30).lines().skip(1) {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.insert(2, "");
        text.push_str(&format!("{}\n", cells.join(",")));
    }
    let o = run("empty.csv", text.as_bytes(), "");
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("column 'e' is empty"), "{err}");
    assert!(!err.contains("holds text"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_resumed_run_keeps_its_diagnostics_and_refuses_new_options() {
    let root = scratch("resume-diagnostics");
    let (whole, out) = (root.join("whole"), root.join("run"));
    let smoke = [
        "run",
        "trajectories",
        "--smoke",
        "--diagnostics",
        "every=50",
        "--out",
    ];
    let args_for = |dir: &Path| -> Vec<String> {
        smoke
            .iter()
            .map(|s| s.to_string())
            .chain([dir.display().to_string()])
            .collect()
    };
    let (whole_args, out_args) = (args_for(&whole), args_for(&out));
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    assert_ok(&gaussmask(&strs(&whole_args), &root));
    let folder = root.join(".run.checkpoint");
    crate::checkpoints_cli::kill_when("trajectories", &strs(&out_args), || {
        crate::checkpoints_cli::count(&folder, ".done.ron") > 0
    });
    let o = out.to_str().unwrap();
    let r = gaussmask(
        &[
            "run",
            "trajectories",
            "--resume",
            o,
            "--diagnostics",
            "every=9",
        ],
        &root,
    );
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(error_line(&r).contains("--diagnostics"));
    assert_ok(&gaussmask(&["run", "trajectories", "--resume", o], &root));
    assert_same_files("diagnostics after a resume", &whole, &out);
    assert!(out.join("diagnostics.csv").is_file());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_run_larger_than_this_machine_is_refused_before_it_starts() {
    let root = scratch("too-large");
    let out = root.join("run");
    for set in ["seeds=1000000000", "data.n=9223372036854775807"] {
        let o = gaussmask(
            &[
                "run",
                "trajectories",
                "--smoke",
                "--set",
                set,
                "--out",
                out.to_str().unwrap(),
            ],
            &root,
        );
        assert_eq!(o.status.code(), Some(2), "{set}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(
            line.contains("GiB at once") && line.contains("data.n"),
            "{line}"
        );
        assert!(names(&root).is_empty(), "{set}: left {:?}", names(&root));
    }
    std::fs::remove_dir_all(root).unwrap();
}
