//! The CSV reader: the kept corpus of malformed files (`tests/corpus-csv/`), each refused with
//! the message it must give (or read as it must be read), and fuzzing: arbitrary and mutated
//! bytes never panic and every error names the file; generated tables round-trip exactly.

use std::path::Path;

use gaussmask_data::table::{CsvTable, parse_csv};
use proptest::prelude::*;

enum Outcome {
    /// The file (or one of its cells) is refused with a message containing this.
    Refused(&'static str),
    /// Read, every column numeric with these values.
    Read(&'static [(&'static str, &'static [f64])]),
}
use Outcome::{Read, Refused};

const CORPUS: &[(&str, Outcome)] = &[
    (
        "ragged-short.csv",
        Refused("row 2 (line 3) has 2 fields where the header has 3 (column 'c' is missing)"),
    ),
    (
        "ragged-long.csv",
        Refused("row 1 (line 2) has 3 fields where the header has 2 (more fields than columns)"),
    ),
    (
        "nan-cell.csv",
        Refused("row 1 (line 2), column 'b': 'NaN' is NaN"),
    ),
    (
        "inf-cell.csv",
        Refused("row 1 (line 2), column 'b': 'inf' is infinite"),
    ),
    (
        "overflow-cell.csv",
        Refused("row 1 (line 2), column 'b': '1e999' is infinite"),
    ),
    (
        "blank-cell.csv",
        Refused("row 1 (line 2), column 'b': empty cell"),
    ),
    ("empty.csv", Refused("empty file (expected a header row)")),
    (
        "only-newlines.csv",
        Refused("empty file (expected a header row)"),
    ),
    ("header-only.csv", Refused("no data rows under the header")),
    (
        "invalid-utf8.csv",
        Refused("line 2: field 2 is not UTF-8 text"),
    ),
    (
        "duplicate-column.csv",
        Refused("column 'a' appears twice in the header"),
    ),
    (
        "unnamed-column.csv",
        Refused("column 2 of the header has no name"),
    ),
    // A byte-order mark and Windows line ends are read as a plain file.
    ("bom-crlf.csv", Read(&[("a", &[1.0]), ("b", &[2.0])])),
    // A quote left open runs to the end of the file (the csv crate's reading); here that is
    // the last field, so the table is still the one meant.
    (
        "unterminated-quote.csv",
        Read(&[("a", &[1.0]), ("b", &[2.0])]),
    ),
];

/// Parses `bytes` and reads every column as numbers: the first error, or the table.
fn read_all(bytes: &[u8], origin: &str) -> Result<CsvTable, String> {
    let table = parse_csv(bytes, origin, b',')?;
    for col in 0..table.columns.len() {
        table.numbers(col)?;
    }
    Ok(table)
}

#[test]
fn the_corpus_of_malformed_files_is_refused_naming_where() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-csv");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every corpus file has an expected outcome");
    for (name, outcome) in CORPUS {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let origin = format!("corpus/{name}");
        match (outcome, read_all(&bytes, &origin)) {
            (Refused(part), Err(e)) => {
                assert!(e.starts_with(&format!("{origin}: ")), "{name}: {e}");
                assert!(e.contains(part), "{name}: {e}");
                assert!(!e.contains('\n'), "{name}: not one line: {e}");
            }
            (Read(columns), Ok(t)) => {
                for (column, values) in columns.iter() {
                    let j = t.column(column).unwrap();
                    assert_eq!(&t.numbers(j).unwrap(), values, "{name}: column {column}");
                }
            }
            (Refused(part), Ok(_)) => panic!("{name} was read; expected an error with '{part}'"),
            (Read(_), Err(e)) => panic!("{name} was refused: {e}"),
        }
    }
}

/// A table of `values` (rows × columns) with columns `c0`, `c1`, … as CSV text.
fn table_text(values: &[Vec<f64>]) -> String {
    let d = values[0].len();
    let mut text = (0..d)
        .map(|j| format!("c{j}"))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in values {
        text.push_str(&row.iter().map(f64::to_string).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Err(e) = read_all(&bytes, "fuzz.csv") {
            prop_assert!(e.starts_with("fuzz.csv: "), "{}", e);
            prop_assert!(!e.contains('\n'), "{}", e);
        }
    }

    #[test]
    fn mutated_tables_never_panic_and_bad_cells_name_row_and_column(
        flips in proptest::collection::vec((0usize..200, prop::sample::select(
            vec![b',', b'\n', b'"', b'x', b' ', b'.', b'-', b'e', b'\r', 0xff]
        )), 1..6),
        cut in 0usize..200,
    ) {
        let values = vec![vec![1.5, -2.0, 3e-3], vec![4.0, 5.25, -6.0], vec![7.0, 8.0, 9.0]];
        let mut bytes = table_text(&values).into_bytes();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        match read_all(&bytes, "fuzz.csv") {
            Err(e) => {
                prop_assert!(e.starts_with("fuzz.csv: "), "{}", e);
                prop_assert!(!e.contains('\n'), "{}", e);
                // A bad cell is placed: its row, line and column.
                if e.contains("not a number") || e.contains("empty cell") {
                    prop_assert!(e.contains(", column '"), "{}", e);
                    prop_assert!(e.contains("row ") && e.contains("(line "), "{}", e);
                }
            }
            Ok(t) => prop_assert!(t.rows() >= 1),
        }
    }

    #[test]
    fn generated_tables_round_trip_exactly(
        values in (1usize..5, 1usize..6).prop_flat_map(|(d, n)| {
            proptest::collection::vec(
                proptest::collection::vec(-1e6f64..1e6, d..=d), n..=n,
            )
        }),
    ) {
        let t = parse_csv(table_text(&values).as_bytes(), "gen.csv", b',').unwrap();
        prop_assert_eq!(t.rows(), values.len());
        for j in 0..values[0].len() {
            let column: Vec<f64> = values.iter().map(|r| r[j]).collect();
            prop_assert_eq!(t.numbers(t.column(&format!("c{j}")).unwrap()).unwrap(), column);
        }
    }
}
