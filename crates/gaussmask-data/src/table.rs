//! Tables from CSV files: a header row naming the columns, then one sample per row, read with
//! the `csv` crate. Every error is one line naming the file, and where it applies the row
//! (1-based, counting data rows), the line of the file and the column.

use gaussmask_core::InputError;
use std::path::Path;

use csv::{ErrorKind, ReaderBuilder, Trim};

/// A CSV file's cells, as text, checked to be rectangular.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvTable {
    /// Where the table came from (the file's path), for error messages.
    pub origin: String,
    /// Column names of the header row, in file order.
    pub columns: Vec<String>,
    /// Cells, row-major, trimmed of surrounding spaces.
    cells: Vec<String>,
    /// Line of the file where each row starts.
    lines: Vec<u64>,
}

/// Reads the CSV file at `path` (fields separated by `delimiter`).
///
/// # Errors
/// The file cannot be read, is empty, has no data rows, a header with an empty or repeated
/// name, a row with more or fewer fields than the header, or text that is not UTF-8.
pub fn read_csv(path: &Path, delimiter: u8) -> Result<CsvTable, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(format!("cannot read {}: {e}", path.display())))?;
    parse_csv(&bytes, &path.display().to_string(), delimiter)
}

/// Parses CSV `bytes`; errors start with `origin`.
///
/// # Errors
/// As [`read_csv`], without the file access.
pub fn parse_csv(bytes: &[u8], origin: &str, delimiter: u8) -> Result<CsvTable, InputError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(
            format!("{origin}: the file is gzip-compressed: decompress it first (gunzip)").into(),
        );
    }
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .trim(Trim::All)
        .from_reader(bytes);
    let at = |line: Option<u64>| line.map(|l| format!(" line {l}:")).unwrap_or_default();
    let describe = |e: csv::Error, columns: &[String]| -> String {
        match e.kind() {
            ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => {
                let row = pos.as_ref().map(|p| p.record()).unwrap_or(0);
                let line = pos.as_ref().map(|p| p.line()).unwrap_or(0);
                let missing = columns
                    .get(*len as usize)
                    .map(|c| format!(" (column '{}' is missing)", shown(c)))
                    .unwrap_or_else(|| " (more fields than columns)".to_string());
                format!(
                    "{origin}: row {row} (line {line}) has {len} fields where the header has \
                     {expected_len}{missing}"
                )
            }
            ErrorKind::Utf8 { pos, err } => format!(
                "{origin}:{} field {} is not UTF-8 text",
                at(pos.as_ref().map(|p| p.line())),
                err.field() + 1
            ),
            _ => format!("{origin}: {e}"),
        }
    };
    let header = reader.headers().map_err(|e| describe(e, &[]))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(format!("{origin}: empty file (expected a header row)").into());
    }
    let columns: Vec<String> = header.iter().map(str::to_string).collect();
    for (i, name) in columns.iter().enumerate() {
        if name.is_empty() {
            return Err(format!(
                "{origin}: line 1: column {} of the header has no name",
                i + 1
            )
            .into());
        }
        if columns[..i].contains(name) {
            return Err(format!(
                "{origin}: line 1: column '{}' appears twice in the header",
                shown(name)
            )
            .into());
        }
    }
    let mut cells = Vec::new();
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| describe(e, &columns))?;
        lines.push(record.position().map(|p| p.line()).unwrap_or(0));
        cells.extend(record.iter().map(str::to_string));
    }
    if lines.is_empty() {
        return Err(format!("{origin}: no data rows under the header").into());
    }
    Ok(CsvTable {
        origin: origin.to_string(),
        columns,
        cells,
        lines,
    })
}

impl CsvTable {
    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// The index of column `name`.
    ///
    /// # Errors
    /// No such column: the message lists the columns there are.
    pub fn column(&self, name: &str) -> Result<usize, InputError> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            let columns: Vec<String> = self.columns.iter().map(|c| shown(c)).collect();
            // One column whose name holds another separator: the file uses that one.
            let hint = match self.columns.as_slice() {
                [only] => [';', '\t', '|']
                    .into_iter()
                    .find(|&c| only.contains(c))
                    .map(|c| {
                        format!(
                            "; the header is one column holding {c:?}: set data.delimiter = \
                             {:?}",
                            c.to_string()
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            InputError::new(format!(
                "{}: no column '{}' (columns: {}){hint}",
                self.origin,
                shown(name),
                columns.join(", ")
            ))
        })
    }

    /// The cell at `row` (0-based) of column `col`.
    pub fn cell(&self, row: usize, col: usize) -> &str {
        &self.cells[row * self.columns.len() + col]
    }

    /// Where `row` (0-based) of column `col` is, for messages: `file: row R (line L), column 'c'`.
    pub fn locate(&self, row: usize, col: usize) -> String {
        format!(
            "{}: row {} (line {}), column '{}'",
            self.origin,
            row + 1,
            self.lines[row],
            shown(&self.columns[col])
        )
    }

    /// Whether column `col` is meant to hold numbers (what makes a column an input by
    /// default): its first non-empty cell reads as a float, NaN and infinities included, so a
    /// column with a bad value is refused by [`CsvTable::numbers`] rather than dropped.
    pub fn looks_numeric(&self, col: usize) -> bool {
        (0..self.rows())
            .map(|row| self.cell(row, col))
            .find(|c| !c.is_empty())
            .is_some_and(|c| c.parse::<f64>().is_ok())
    }

    /// Column `col` as finite numbers.
    ///
    /// # Errors
    /// An empty cell, text that is not a number, NaN or an infinite value: the message names
    /// the file, row, line and column.
    pub fn numbers(&self, col: usize) -> Result<Vec<f64>, InputError> {
        (0..self.rows())
            .map(|row| {
                parse_number(self.cell(row, col))
                    .map_err(|why| InputError::new(format!("{}: {why}", self.locate(row, col))))
            })
            .collect()
    }

    /// Column `col` as text.
    pub fn texts(&self, col: usize) -> Vec<&str> {
        (0..self.rows()).map(|row| self.cell(row, col)).collect()
    }
}

/// `text` for a one-line message: line breaks and other control characters escaped (a quoted
/// CSV field may hold them).
pub fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

/// A finite number, or why the cell is not one.
fn parse_number(cell: &str) -> Result<f64, InputError> {
    if cell.is_empty() {
        return Err("empty cell (expected a number)".into());
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_nan() => {
            Err(format!("'{}' is NaN (missing values are not allowed)", shown(cell)).into())
        }
        Ok(v) if v.is_infinite() => Err(format!("'{}' is infinite", shown(cell)).into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{}' is not a number", shown(cell)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CsvTable, InputError> {
        parse_csv(text.as_bytes(), "t.csv", b',')
    }

    #[test]
    fn a_table_reads_by_column_name() {
        let t = parse("a, b ,label\n1,2.5,cat\n-3,4e2,dog\n").unwrap();
        assert_eq!(t.columns, ["a", "b", "label"]);
        assert_eq!(t.rows(), 2);
        assert_eq!(t.numbers(t.column("b").unwrap()).unwrap(), [2.5, 400.0]);
        assert_eq!(t.texts(2), ["cat", "dog"]);
        assert!(t.looks_numeric(0) && !t.looks_numeric(2));
    }

    #[test]
    fn every_bad_cell_names_row_line_and_column() {
        let t = parse("a,b\n1,2\n3,x\n").unwrap();
        assert_eq!(
            t.numbers(1).unwrap_err(),
            "t.csv: row 2 (line 3), column 'b': 'x' is not a number".into()
        );
        let t = parse("a,b\n1,NaN\n").unwrap();
        assert!(
            t.numbers(1)
                .unwrap_err()
                .contains("row 1 (line 2), column 'b': 'NaN' is NaN")
        );
        let t = parse("a,b\n1,-inf\n").unwrap();
        assert!(t.numbers(1).unwrap_err().contains("'-inf' is infinite"));
        let t = parse("a,b\n1,\n").unwrap();
        assert!(t.numbers(1).unwrap_err().contains("column 'b': empty cell"));
    }

    #[test]
    fn malformed_files_are_refused_with_where() {
        assert_eq!(
            parse("a,b,c\n1,2,3\n4,5\n").unwrap_err(),
            "t.csv: row 2 (line 3) has 2 fields where the header has 3 (column 'c' is missing)"
                .into()
        );
        assert!(
            parse("a,b\n1,2,3\n")
                .unwrap_err()
                .contains("more fields than columns")
        );
        assert_eq!(
            parse("").unwrap_err(),
            "t.csv: empty file (expected a header row)".into()
        );
        assert_eq!(
            parse("a,b\n").unwrap_err(),
            "t.csv: no data rows under the header".into()
        );
        assert!(
            parse("a,a\n1,2\n")
                .unwrap_err()
                .contains("column 'a' appears twice")
        );
        assert!(
            parse("a,,c\n1,2,3\n")
                .unwrap_err()
                .contains("column 2 of the header has no name")
        );
        let bad_utf8 = parse_csv(b"a,b\n1,\xff\n", "t.csv", b',').unwrap_err();
        assert!(
            bad_utf8.starts_with("t.csv: line 2: field 2 is not UTF-8"),
            "{bad_utf8}"
        );
        let t = parse("a\n1\n").unwrap();
        assert_eq!(
            t.column("y").unwrap_err(),
            "t.csv: no column 'y' (columns: a)".into()
        );
    }
}
