//! Units of work through the command line: shards merged to the bytes of one process, merge
//! refusing shards that do not belong together, a killed synthetic run resuming to the same
//! bytes, and the Slurm job array on a real (single-node) Slurm cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::checkpoints_cli::{assert_same_csvs, count, kill_when};
use crate::cli::{assert_ok, assert_one_line_error, gaussmask, scratch, stderr};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `run <id> --smoke <extra>... --out <out>`.
fn smoke(id: &str, extra: &[&str], out: &Path) -> Output {
    let mut args = vec!["run", id, "--smoke"];
    args.extend_from_slice(extra);
    args.extend(["--out", path(out)]);
    gaussmask(&args, out.parent().unwrap())
}

/// Runs shards 0..count of `id` (smoke, `extra`) into `root/shard-I` and returns their paths.
fn shards(id: &str, extra: &[&str], count: usize, root: &Path) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let dir = root.join(format!("shard-{i}-of-{count}"));
            let shard = format!("{i}/{count}");
            let mut args = extra.to_vec();
            args.extend(["--shard", &shard]);
            assert_ok(&smoke(id, &args, &dir));
            assert!(dir.join("shard.json").is_file(), "{id}: no shard.json");
            dir
        })
        .collect()
}

fn merge(id: &str, out: &Path, dirs: &[PathBuf]) -> Output {
    let mut args = vec!["merge", id, "--out", path(out)];
    args.extend(dirs.iter().map(|d| path(d)));
    gaussmask(&args, out.parent().unwrap())
}

/// Number of units of `id`'s smoke run, from its shard.json.
fn units(shard: &Path) -> usize {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shard.join("shard.json")).unwrap()).unwrap();
    record["total_units"].as_u64().unwrap() as usize
}

fn shard_and_merge_equal_one_process(id: &str, extra: &[&str]) {
    let root = scratch(&format!("shards-{id}"));
    let whole = root.join("whole");
    assert_ok(&smoke(id, extra, &whole));
    let one = shards(id, extra, 1, &root);
    let total = units(&one[0]);
    assert!(total >= 3, "{id}: the smoke run has {total} units");
    for count in [1, 2, 3, total + 2] {
        let dirs = if count == 1 {
            one.clone()
        } else {
            shards(id, extra, count, &root)
        };
        let merged = root.join(format!("merged-{count}"));
        let o = merge(id, &merged, &dirs);
        assert_ok(&o);
        assert_same_csvs(&format!("{id}, {count} shards"), &whole, &merged);
        assert_eq!(
            std::fs::read(whole.join("config.toml")).unwrap(),
            std::fs::read(merged.join("config.toml")).unwrap(),
            "{id}: the merged run's config"
        );
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn trajectories_shards_merge_to_the_bytes_of_one_process() {
    shard_and_merge_equal_one_process("trajectories", &[]);
}

#[test]
fn floor_scaling_shards_merge_to_the_bytes_of_one_process() {
    shard_and_merge_equal_one_process("floor-scaling", &[]);
}

#[test]
fn image_accuracy_shards_merge_to_the_bytes_of_one_process() {
    shard_and_merge_equal_one_process("image-accuracy", &[]);
}

/// Merge fails with exit 2 and one line containing `needle`, and writes nothing at `out`.
fn assert_merge_refused(dirs: &[PathBuf], out: &Path, needle: &str) {
    let o = merge("trajectories", out, dirs);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected:\n{err}"
    );
    assert!(err.contains(needle), "should say `{needle}`: {err}");
    assert!(!out.exists(), "merge left {}", out.display());
}

#[test]
fn merge_refuses_a_missing_shard_another_config_or_seed_and_a_shard_twice() {
    let root = scratch("merge-refusals");
    let dirs = shards("trajectories", &[], 3, &root);
    let out = root.join("merged");
    // Smoke κ grid [0, 0.6, 2]: shard 1/3 holds κ = 0.6.
    assert_merge_refused(
        &[dirs[0].clone(), dirs[2].clone()],
        &out,
        "missing shard 1/3 of trajectories: units kappa=0.6 are not there",
    );
    assert_merge_refused(
        &[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()],
        &out,
        "shard 1/3 is given twice",
    );
    let seeded = root.join("seeded");
    assert_ok(&smoke(
        "trajectories",
        &["--seed", "7", "--shard", "1/3"],
        &seeded,
    ));
    assert_merge_refused(
        &[dirs[0].clone(), seeded, dirs[2].clone()],
        &out,
        "another seed (0 and 7)",
    );
    let other = root.join("other");
    assert_ok(&smoke(
        "trajectories",
        &["--set", "train.lr=0.01", "--shard", "1/3"],
        &other,
    ));
    assert_merge_refused(
        &[dirs[0].clone(), other, dirs[2].clone()],
        &out,
        "another config (`train` differs)",
    );
    let of_two = shards("trajectories", &[], 2, &root);
    assert_merge_refused(
        &[dirs[0].clone(), of_two[1].clone(), dirs[2].clone()],
        &out,
        "shard count 3 and 2",
    );
    let o = smoke("trajectories", &["--shard", "2/2"], &root.join("x"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 ≤ I < N"), "{}", stderr(&o));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_killed_synthetic_run_resumes_to_the_uninterrupted_result() {
    // floor-scaling's smoke grid, each unit long enough to be killed after the first.
    let sets = ["--set", "train.steps=4000"];
    let root = scratch("killed-synthetic");
    let (out, whole) = (root.join("run"), root.join("whole"));
    let folder = root.join(".run.checkpoint");
    let mut args = vec!["run", "floor-scaling", "--smoke"];
    args.extend(sets);
    args.extend(["--out", path(&out)]);
    kill_when("floor-scaling", &args, || count(&folder, ".done.ron") > 0);
    let kept = count(&folder, ".done.ron");
    assert!(kept >= 1 && !out.exists());
    let o = gaussmask(&["run", "floor-scaling", "--resume", path(&out)], &root);
    assert_ok(&o);
    let err = stderr(&o);
    assert_eq!(
        err.matches("kept from the checkpoint").count(),
        kept,
        "every finished unit is taken up, none recomputed:\n{err}"
    );
    assert!(!folder.exists(), "checkpoint left after the run");
    assert_ok(&smoke("floor-scaling", &sets, &whole));
    assert_same_csvs("floor-scaling", &out, &whole);
    std::fs::remove_dir_all(root).unwrap();
}

// ---- Slurm ----------------------------------------------------------------------------------

/// Fails (never skips) when no Slurm cluster answers.
fn require_slurm() {
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    assert!(
        ok,
        "no Slurm cluster answers `sinfo`: start the single-node one with `bash .ci/slurm start`"
    );
}

/// The job id after `label` in the output of `gaussmask slurm --submit`/`--retry`.
fn job_id(stdout: &str, label: &str) -> String {
    let rest = &stdout[stdout
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
        + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .to_string()
}

/// Polls `scontrol show job` until job `id` (every task of it, for an array) has ended and
/// returns its states, one per task.
fn wait_for_job(id: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let o = Command::new("scontrol")
            .args(["-o", "show", "job", id])
            .output()
            .expect("scontrol runs");
        let text = String::from_utf8_lossy(&o.stdout);
        let states: Vec<String> = text
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("JobState="))
                    .map(str::to_string)
            })
            .collect();
        let running = |s: &String| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "REQUEUED" | "RESIZING"
            )
        };
        if !states.is_empty() && !states.iter().any(running) {
            return states;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} not ended after {limit:?}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn slurm(args: &[&str], root: &Path) -> String {
    let mut full = vec!["slurm", "trajectories"];
    full.extend_from_slice(args);
    let o = gaussmask(&full, root);
    assert_ok(&o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_slurm_job_array_merges_to_the_bytes_of_one_process() {
    require_slurm();
    let root = scratch("slurm");
    let sweep = root.join("sweep");
    let whole = root.join("whole");
    assert_ok(&smoke("trajectories", &[], &whole));
    let out = slurm(
        &[
            "--shards",
            "3",
            "--submit",
            "--smoke",
            "--out",
            path(&sweep),
        ],
        &root,
    );
    let script = std::fs::read_to_string(sweep.join("array.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2"), "{script}");
    let merge_job = job_id(&out, "merge job ");
    assert_eq!(
        wait_for_job(&merge_job, Duration::from_secs(300)),
        ["COMPLETED"]
    );
    assert_same_csvs("trajectories on Slurm", &whole, &sweep.join("result"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_failed_slurm_task_cancels_the_merge_and_a_retry_completes_the_sweep() {
    require_slurm();
    let root = scratch("slurm-fail");
    let sweep = root.join("sweep");
    let whole = root.join("whole");
    slurm(&["--shards", "3", "--smoke", "--out", path(&sweep)], &root);
    // A file where shard 1 writes its directory: that task fails.
    let blocker = sweep.join("shards/shard-1");
    std::fs::write(&blocker, "in the way").unwrap();
    let out = slurm(&["--retry", path(&sweep)], &root);
    let merge_job = job_id(&out, "merge job ");
    // Bounded: the merge job is cancelled once its dependency can never be met.
    let state = wait_for_job(&merge_job, Duration::from_secs(120));
    assert!(
        state == ["CANCELLED"] || state == ["FAILED"],
        "merge job {merge_job} ended {state:?}"
    );
    assert!(!sweep.join("result").exists());
    let tasks = wait_for_job(&job_id(&out, "array job "), Duration::from_secs(300));
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert_eq!(
        tasks.iter().filter(|s| *s == "FAILED").count(),
        1,
        "{tasks:?}"
    );
    // merge names the units of the missing shard.
    let finished: Vec<PathBuf> = [0, 2]
        .iter()
        .map(|i| sweep.join(format!("shards/shard-{i}")))
        .collect();
    let o = merge("trajectories", &root.join("merged"), &finished);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("units kappa=0.6 are not there"),
        "{}",
        stderr(&o)
    );
    // Re-submitting re-runs shard 1 only, and merges.
    std::fs::remove_file(&blocker).unwrap();
    let out = slurm(&["--retry", path(&sweep)], &root);
    assert!(out.contains("re-submitting shard 1 of 3"), "{out}");
    assert!(out.contains("(1 task)"), "{out}");
    let merge_job = job_id(&out, "merge job ");
    assert_eq!(
        wait_for_job(&merge_job, Duration::from_secs(300)),
        ["COMPLETED"]
    );
    assert_ok(&smoke("trajectories", &[], &whole));
    assert_same_csvs("trajectories after a retry", &whole, &sweep.join("result"));
    std::fs::remove_dir_all(root).unwrap();
}

/// `args` fails with exit 2 and one line on stderr containing `needle`.
fn assert_one_line(args: &[&str], path_env: Option<&str>, needle: &str) {
    let mut cmd = Command::new(crate::cli::BIN);
    cmd.args(args).env_remove("RUST_BACKTRACE");
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    assert_one_line_error(&cmd.output().unwrap(), needle);
}

#[test]
fn bad_shard_merge_and_slurm_input_is_one_line_with_exit_2() {
    let root = scratch("shard-errors");
    let p = |name: &str| root.join(name).to_str().unwrap().to_string();
    let out = p("out");
    let run = |extra: &[&str], needle: &str| {
        let mut args = vec!["run", "trajectories", "--smoke", "--out", &out];
        args.extend_from_slice(extra);
        assert_one_line(&args, None, needle);
    };
    run(&["--shard", "2/2"], "0 ≤ I < N");
    run(
        &["--shard", "0/2", "--save-weights"],
        "--shard runs without",
    );
    run(
        &["--set", "kappas=[0.2, 0.2]"],
        "kappas must be distinct values",
    );
    assert_one_line(
        &["run", "trajectories", "--resume", &out, "--shard", "0/2"],
        None,
        "--shard",
    );
    // merge: not a shard, another experiment, another backend, another version.
    let shard = shards("trajectories", &[], 2, &root);
    let merge = |dirs: &[&str], id: &str, needle: &str| {
        let mut args = vec!["merge", id, "--out", &out];
        args.extend_from_slice(dirs);
        assert_one_line(&args, None, needle);
        assert!(!root.join("out").exists());
    };
    let s0 = path(&shard[0]).to_string();
    merge(&[&p("nope")], "trajectories", "no such directory");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    merge(&[&p("empty")], "trajectories", "no shard.json");
    merge(&[&s0], "floor-scaling", "a shard of 'trajectories'");
    let nd = root.join("ndarray");
    assert_ok(&smoke(
        "trajectories",
        &["--backend", "ndarray", "--shard", "1/2"],
        &nd,
    ));
    merge(
        &[&s0, path(&nd)],
        "trajectories",
        "backend flex (f32) and ndarray (f32)",
    );
    let old = root.join("old");
    std::fs::create_dir_all(old.join("units")).unwrap();
    for f in ["config.toml", "units/kappa=0.6.ron"] {
        std::fs::copy(shard[1].join(f), old.join(f)).unwrap();
    }
    let record = std::fs::read_to_string(shard[1].join("shard.json")).unwrap();
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(record.contains(&version), "{record}");
    std::fs::write(
        old.join("shard.json"),
        record.replace(&version, "\"version\": \"0.0.1\""),
    )
    .unwrap();
    merge(&[&s0, path(&old)], "trajectories", "gaussmask version");
    // slurm.
    let slurm = |args: &[&str], env: Option<&str>, needle: &str| {
        let mut full = vec!["slurm", "trajectories"];
        full.extend_from_slice(args);
        assert_one_line(&full, env, needle);
    };
    let sweep = p("sweep");
    slurm(
        &["--shards", "0", "--out", &sweep],
        None,
        "--shards must be ≥ 1",
    );
    slurm(
        &["--shards", "2", "--resume", &sweep],
        None,
        "takes neither --resume nor --shard",
    );
    slurm(&["--retry", &p("nope")], None, "no plan.json");
    slurm(&["--shards", "2", "--out", &s0], None, "already exists");
    assert_ok(&gaussmask(
        &[
            "slurm",
            "trajectories",
            "--shards",
            "2",
            "--smoke",
            "--out",
            &sweep,
        ],
        &root,
    ));
    assert_one_line(
        &["slurm", "floor-scaling", "--retry", &sweep],
        None,
        "a sweep of 'trajectories'",
    );
    slurm(
        &["--retry", &sweep],
        Some("/nonexistent"),
        "cannot run sbatch",
    );
    std::fs::remove_dir_all(root).unwrap();
}
