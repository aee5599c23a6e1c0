//! Checkpoints through the command line, for every experiment that checkpoints: saving at every
//! step changes no result, and a run killed with SIGKILL (no chance to save anything more)
//! after its first checkpoints resumes to the bytes of an uninterrupted run, leaving none of
//! the dead process's folders behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{BIN, assert_ok, gaussmask, scratch, stderr};

/// The experiments that checkpoint, each with settings that make its smoke run long enough to
/// be killed in the middle (more epochs or rounds than its `[smoke]` section).
const CHECKPOINTING: [(&str, &[&str]); 5] = [
    ("image-accuracy", &["train.epochs=4"]),
    ("membership-inference", &["epochs=[6, 12]"]),
    ("lira", &["train.epochs=8"]),
    ("dp-baseline", &["epochs=[4, 8]"]),
    ("federated-fading", &["image.rounds=4"]),
];

/// `gaussmask run <id> --smoke --set <sets>... <extra>... --out <out>`.
fn run_args<'a>(id: &'a str, sets: &[&'a str], extra: &[&'a str], out: &'a Path) -> Vec<&'a str> {
    let mut args = vec!["run", id, "--smoke"];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    args
}

/// The CSV files of a run directory with their bytes, by name.
fn csvs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "csv"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no CSV", dir.display());
    files
}

pub(crate) fn assert_same_csvs(id: &str, a: &Path, b: &Path) {
    let (a, b) = (csvs(a), csvs(b));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "{id}");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{id}: {name} differs");
    }
}

#[test]
fn checkpointing_at_every_step_changes_no_result() {
    for (id, _) in CHECKPOINTING {
        let root = scratch("every-step");
        let (off, every) = (root.join("off"), root.join("every"));
        assert_ok(&gaussmask(
            &run_args(id, &[], &["--checkpoint-every", "0"], &off),
            &root,
        ));
        let o = gaussmask(
            &run_args(id, &[], &["--checkpoint-every", "1"], &every),
            &root,
        );
        assert_ok(&o);
        assert_same_csvs(id, &off, &every);
        // Nothing is left beside the two results: no checkpoint, no staging folder.
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["every", "off"], "{id}");
        std::fs::remove_dir_all(root).unwrap();
    }
}

/// Names in the checkpoint folder `folder` ending in `suffix`.
pub(crate) fn count(folder: &Path, suffix: &str) -> usize {
    std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// Starts `args` and kills it with SIGKILL once its checkpoint folder holds a finished unit
/// and a training state (so both kinds of saved work are taken up on resume).
pub(crate) fn kill_after_first_checkpoints(id: &str, args: &[&str], folder: &Path) -> u32 {
    kill_when(id, args, || {
        count(folder, ".done.ron") > 0 && count(folder, ".state") > 0
    })
}

/// Starts `args` and kills it with SIGKILL once `ready` holds; returns its pid.
pub(crate) fn kill_when(id: &str, args: &[&str], ready: impl Fn() -> bool) -> u32 {
    let mut child: Child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{id} ended ({status}) before it could be killed after a checkpoint");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{id}: no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{id}"
    );
    child.id()
}

/// A staging folder that looks like a live run's: `sleeper` is alive and there is no lock file.
fn live_leftover(root: &Path, sleeper: &Child) -> PathBuf {
    let path = root.join(format!(".live.partial-{}", sleeper.id()));
    std::fs::create_dir_all(&path).unwrap();
    path
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    for (id, sets) in CHECKPOINTING {
        let root = scratch("killed");
        let (out, whole) = (root.join("run"), root.join("whole"));
        let folder = root.join(".run.checkpoint");
        let pid = kill_after_first_checkpoints(
            id,
            &run_args(id, sets, &["--checkpoint-every", "1"], &out),
            &folder,
        );
        let leftover = root.join(format!(".run.partial-{pid}"));
        assert!(leftover.is_dir() && !out.exists(), "{id}");
        let live = live_leftover(&root, &sleeper);
        let o = gaussmask(&["run", id, "--resume", out.to_str().unwrap()], &root);
        assert_ok(&o);
        assert!(
            !leftover.exists(),
            "{id}: the dead run's staging folder is left"
        );
        assert!(
            live.exists(),
            "{id}: a live process's staging folder was removed"
        );
        assert!(!folder.exists(), "{id}: checkpoint left after the run");
        assert_ok(&gaussmask(&run_args(id, sets, &[], &whole), &root));
        assert_same_csvs(id, &out, &whole);
        std::fs::remove_dir_all(root).unwrap();
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn a_run_into_a_parent_removes_leftovers_of_dead_processes_only() {
    let root = scratch("leftovers");
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let live = live_leftover(&root, &sleeper);
    // A folder of a process that is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = root.join(format!(".old.partial-{}", gone.id()));
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("half.csv"), "x,").unwrap();
    let o = gaussmask(
        &[
            "run",
            "smoothed-relu",
            "--smoke",
            "--out",
            root.join("new").to_str().unwrap(),
        ],
        &root,
    );
    assert_ok(&o);
    assert!(!dead.exists() && live.exists());
    // A run into the target a live process is writing is refused.
    std::fs::rename(&live, root.join(format!(".busy.partial-{}", sleeper.id()))).unwrap();
    let o = gaussmask(
        &[
            "run",
            "smoothed-relu",
            "--smoke",
            "--out",
            root.join("busy").to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pid {}", sleeper.id())),
        "{}",
        stderr(&o)
    );
    // Once that process is gone its folder goes with the next run.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let o = gaussmask(
        &[
            "run",
            "smoothed-relu",
            "--smoke",
            "--out",
            root.join("busy").to_str().unwrap(),
        ],
        &root,
    );
    assert_ok(&o);
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["busy", "new"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_training_state_that_is_no_checkpoint_of_the_run_is_one_line_with_exit_2() {
    // image-accuracy and dp-baseline resume a trainer (`Fit`), lira a batched one
    // (`MlpReplicas` on rows of their own).
    for (id, sets) in [CHECKPOINTING[0], CHECKPOINTING[2], CHECKPOINTING[3]] {
        let root = scratch("bad-state");
        let out = root.join("run");
        let folder = root.join(".run.checkpoint");
        kill_after_first_checkpoints(
            id,
            &run_args(id, sets, &["--checkpoint-every", "1"], &out),
            &folder,
        );
        // Keep each state file's frame and side value; replace what the trainer saved.
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "state") {
                let mut bytes = std::fs::read(&path).unwrap();
                let side = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
                bytes.truncate(16 + side);
                bytes.extend_from_slice(b"not a checkpoint");
                std::fs::write(&path, bytes).unwrap();
            }
        }
        let o = gaussmask(&["run", id, "--resume", out.to_str().unwrap()], &root);
        // The units finished before are taken up first (their progress lines), then the bad
        // state stops the run: exit 2, one `error:` line, last, naming the file.
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{id}: {err}");
        let last = err.trim_end().lines().last().unwrap();
        assert!(
            last.starts_with("error: ") && last.contains(".state") && last.contains("checkpoint"),
            "{id}: {err}"
        );
        let errors = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(errors, 1, "{id}: {err}");
        assert!(!out.exists(), "{id}: a result was written");
        std::fs::remove_dir_all(root).unwrap();
    }
}
