//! Recorded results: `gaussmask records save|tables|check` — README blocks generated from
//! records and stale ones caught, re-runs compared with their records exactly or within the
//! tolerance, the statistical claims checked, and every bad input one line with exit 2.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cli::{assert_ok, assert_one_line_error, gaussmask, scratch, stderr};

/// The repository root (the committed records and READMEs).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn records(args: &[&str], root: &Path) -> Output {
    let mut full = vec!["records"];
    full.extend_from_slice(args);
    full.extend(["--root", root.to_str().unwrap()]);
    isolated(&full, root)
}

/// The CLI run in `root`, outside any git checkout: what run.json says of the code (commit,
/// uncommitted changes) is then the test's, not the state of the tree the tests run in.
fn isolated(args: &[&str], root: &Path) -> Output {
    crate::cli::command(args, root)
        .current_dir(root)
        .env("GIT_CEILING_DIRECTORIES", root.parent().unwrap())
        .output()
        .expect("the CLI starts")
}

/// A full (not smoke) run of `id` with `sets`, saved as a record under `root`.
fn recorded_run(root: &Path, id: &str, sets: &[&str]) -> PathBuf {
    let run = root.join("runs").join(id);
    let mut args = vec!["run", id, "--out", run.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    assert_ok(&isolated(&args, root));
    assert_ok(&records(&["save", run.to_str().unwrap()], root));
    root.join("records").join(id)
}

#[test]
fn the_committed_readmes_are_what_the_committed_records_give() {
    // The same check `.ci/run` makes: no table edited by hand, no claim its record refutes.
    let o = records(&["tables", "--check"], &repository());
    assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("record blocks up to date"), "{out}");
    assert!(out.contains("claim of decomposition: holds"), "{out}");
}

#[test]
fn tables_are_written_between_markers_and_stale_ones_are_found() {
    let root = scratch("records-tables");
    let record = recorded_run(&root, "smoothed-relu", &[]);
    for f in [
        "run.json",
        "SHA256SUMS",
        "summary.json",
        "config.toml",
        "smoothed_relu.csv",
    ] {
        assert!(record.join(f).is_file(), "{f} missing from the record");
    }
    let readme = root.join("README.md");
    std::fs::write(
        &readme,
        "# x\n\n<!-- record: smoothed-relu/errors -->\nold\n<!-- end record -->\n\nkept\n",
    )
    .unwrap();
    let o = records(&["tables", "--check"], &root);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("README.md"), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&readme)
            .unwrap()
            .contains("\nold\n")
    );

    assert_ok(&records(&["tables"], &root));
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(!text.contains("\nold\n") && text.ends_with("<!-- end record -->\n\nkept\n"));
    // The table's numbers are the record's: the largest error in standard errors, as read
    // here from summary.json.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record.join("summary.json")).unwrap()).unwrap();
    let se = summary["max_error_in_se_proxy"].as_f64().unwrap();
    assert!(
        text.contains(&format!("| {:.0} |", se.round())),
        "{se}:\n{text}"
    );
    assert_ok(&records(&["tables", "--check"], &root));

    // A hand edit inside a block is stale again.
    std::fs::write(&readme, text.replacen("proxy σ̂", "proxy", 1)).unwrap();
    assert_eq!(
        records(&["tables", "--check"], &root).status.code(),
        Some(1)
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_rerun_matches_its_record_and_a_changed_number_is_found() {
    let root = scratch("records-check");
    // 300 steps keep the per-step CSV above the size kept in the record: it is a hash only.
    let record = recorded_run(&root, "trajectories", &["train.steps=300"]);
    assert!(!record.join("trajectories.csv").exists());
    let o = records(&["check", "trajectories"], &root);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 files identical"));

    // One digit of the summary, changed: found, named, exit 1.
    let summary = record.join("summary.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    let (at, _) = text.match_indices("\"floor\": ").next().unwrap();
    let digit = at + "\"floor\": ".len();
    let mut bytes = text.into_bytes();
    bytes[digit] = if bytes[digit] == b'9' {
        b'8'
    } else {
        bytes[digit] + 1
    };
    std::fs::write(&summary, &bytes).unwrap();
    let o = records(&["check", "trajectories"], &root);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("summary.json") && err.contains("floor"),
        "{err}"
    );

    // On a CPU with other vector extensions the comparison has a tolerance (a changed
    // leading digit is beyond it), and the per-step CSV kept as a hash cannot be compared.
    let run_json = record.join("run.json");
    let original = std::fs::read(&run_json).unwrap();
    let mut run: serde_json::Value = serde_json::from_slice(&original).unwrap();
    run["cpu_features"] = serde_json::json!(["another-cpu"]);
    std::fs::write(&run_json, serde_json::to_vec_pretty(&run).unwrap()).unwrap();
    let o = records(&["check", "trajectories"], &root);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    std::fs::copy(root.join("runs/trajectories/summary.json"), &summary).unwrap();
    let o = records(&["check", "trajectories"], &root);
    assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("within relative") && out.contains("1 files kept only as a hash"),
        "{out}"
    );

    // A recorded hash that no longer matches, on the record's own CPU.
    std::fs::write(&run_json, original).unwrap();
    let sums = record.join("SHA256SUMS");
    let text = std::fs::read_to_string(&sums).unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with("trajectories.csv"))
        .unwrap();
    std::fs::write(
        &sums,
        text.replace(line, &format!("{}  trajectories.csv", "0".repeat(64))),
    )
    .unwrap();
    let o = records(&["check", "trajectories"], &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("trajectories.csv differs from its recorded SHA-256"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_claim_the_record_refutes_fails_the_check() {
    // decomposition's record with the closed form moved 5 standard errors off Monte Carlo.
    let root = scratch("records-claims");
    let from = repository().join("records/decomposition");
    let to = root.join("records/decomposition");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    assert_ok(&records(&["tables", "--check"], &root));
    let csv = std::fs::read_to_string(to.join("decomposition.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (mc, se, exact) = (col("mc_masked"), col("mc_masked_se"), col("exact"));
    let mut out = vec![header.join(",")];
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        let moved = cells[mc].parse::<f64>().unwrap() + 5.0 * cells[se].parse::<f64>().unwrap();
        cells[exact] = moved.to_string();
        out.push(cells.join(","));
    }
    std::fs::write(to.join("decomposition.csv"), out.join("\n") + "\n").unwrap();
    let o = records(&["tables", "--check"], &root);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Kolmogorov–Smirnov"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILS"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn bad_input_to_records_is_one_line_and_exit_2() {
    let root = scratch("records-errors");
    let smoke = root.join("smoke");
    assert_ok(&gaussmask(
        &[
            "run",
            "smoothed-relu",
            "--smoke",
            "--out",
            smoke.to_str().unwrap(),
        ],
        &root,
    ));
    let o = records(&["save", smoke.to_str().unwrap()], &root);
    assert_one_line_error(&o, "a smoke run is not a record");
    assert!(!root.join("records/smoothed-relu").exists());

    let o = records(&["save", root.join("nowhere").to_str().unwrap()], &root);
    assert_one_line_error(&o, "run.json");

    recorded_run(&root, "smoothed-relu", &[]);
    let run = root.join("runs/smoothed-relu");
    let o = records(&["save", run.to_str().unwrap()], &root);
    assert_one_line_error(&o, "--replace");
    assert_ok(&records(
        &["save", run.to_str().unwrap(), "--replace"],
        &root,
    ));
    let o = records(&["save", run.to_str().unwrap(), "--name", "../x"], &root);
    assert_one_line_error(&o, "--name");

    // A run no commit names is not a record: uncommitted changes, or a binary of another commit.
    let run_json = run.join("run.json");
    let good = std::fs::read_to_string(&run_json).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["uncommitted_changes"] = serde_json::Value::Bool(true);
    std::fs::write(&run_json, value.to_string()).unwrap();
    let o = records(&["save", run.to_str().unwrap(), "--replace"], &root);
    assert_one_line_error(&o, "uncommitted changes");
    value["uncommitted_changes"] = serde_json::Value::Bool(false);
    value["git_revision"] = serde_json::Value::String("a".repeat(40));
    value["build_revision"] = serde_json::Value::String("b".repeat(40));
    std::fs::write(&run_json, value.to_string()).unwrap();
    let o = records(&["save", run.to_str().unwrap(), "--replace"], &root);
    assert_one_line_error(&o, "built from bbbbbbb but ran in a checkout at aaaaaaa");
    std::fs::write(&run_json, good).unwrap();

    assert_one_line_error(
        &records(&["check", "nothing"], &root),
        "no record 'nothing'",
    );
    assert_one_line_error(
        &records(&["check", "smoothed-relu", "--rtol=-1"], &root),
        "--rtol",
    );

    let readme = root.join("README.md");
    std::fs::write(&readme, "a\n<!-- record: smoothed-relu/errors -->\nb\n").unwrap();
    assert_one_line_error(&records(&["tables"], &root), "README.md:2");
    std::fs::write(
        &readme,
        "<!-- record: smoothed-relu/nothing -->\n<!-- end record -->\n",
    )
    .unwrap();
    assert_one_line_error(&records(&["tables"], &root), "has no table 'nothing'");
    std::fs::write(
        &readme,
        "<!-- record: other/errors -->\n<!-- end record -->\n",
    )
    .unwrap();
    assert_one_line_error(&records(&["tables"], &root), "no record 'other'");
    std::fs::write(
        &readme,
        "<!-- record: bench/none.md -->\n<!-- end record -->\n",
    )
    .unwrap();
    assert_one_line_error(&records(&["tables"], &root), "no benchmark record");
    std::fs::write(&readme, "text\n<!-- end record -->\n").unwrap();
    assert_one_line_error(&records(&["tables"], &root), "README.md:2");
    std::fs::remove_dir_all(root).unwrap();
}
