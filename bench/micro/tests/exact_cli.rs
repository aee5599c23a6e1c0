//! `gaussmask-exact`'s error paths: one line naming the file or flag, exit code 2, and no file
//! left half-written.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_gaussmask-exact");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gaussmask-exact-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("gaussmask-exact runs")
}

fn assert_rejected(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected:\n{err}"
    );
    assert!(
        err.contains(needle),
        "message should name `{needle}`: {err}"
    );
}

#[test]
fn a_problem_round_trips_and_bad_inputs_are_refused() {
    let dir = scratch("errors");
    let problem = dir.join("problem.json");
    let p = problem.to_str().unwrap();
    // A small valid problem evaluates to finite, positive values that depend on κ.
    let o = run(&["problem", "--n", "6", "--d", "3", "--m", "4", "--out", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["eval", "--problem", p, "--kappas", "0,1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let values: Vec<f64> = serde_json::from_value(line["values"].clone()).unwrap();
    assert!(
        values.iter().all(|v| v.is_finite() && *v > 0.0) && values[0] != values[1],
        "{values:?}"
    );

    assert_rejected(&run(&["problem", "--n", "0", "--out", p]), "--n");
    assert_rejected(&run(&["eval", "--problem", p, "--kappas=-1"]), "--kappas");
    let missing = dir.join("missing.json");
    assert_rejected(
        &run(&[
            "eval",
            "--problem",
            missing.to_str().unwrap(),
            "--kappas",
            "1",
        ]),
        "missing.json",
    );
    // Sizes that disagree with n, d, m name the field and the file.
    let text = std::fs::read_to_string(&problem).unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
    bad["m"] = serde_json::json!(5);
    let wrong = dir.join("wrong.json");
    std::fs::write(&wrong, bad.to_string()).unwrap();
    let o = run(&[
        "eval",
        "--problem",
        wrong.to_str().unwrap(),
        "--kappas",
        "1",
    ]);
    assert_rejected(&o, "field 'w'");
    assert_rejected(&o, "wrong.json");
    std::fs::write(&wrong, "{ not json").unwrap();
    assert_rejected(
        &run(&[
            "eval",
            "--problem",
            wrong.to_str().unwrap(),
            "--kappas",
            "1",
        ]),
        "wrong.json",
    );
    // The problem writer leaves nothing half-written where it cannot write.
    let blocked = dir.join("no-such-dir").join("problem.json");
    assert_rejected(
        &run(&["problem", "--out", blocked.to_str().unwrap()]),
        "problem.json",
    );
    assert!(!dir.join("no-such-dir").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
