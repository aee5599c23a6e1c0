//! The generated blocks of the READMEs: `<!-- record: NAME/TABLE -->`, the block, then
//! `<!-- end record -->`.

use crate::error::HarnessError;

/// The files, relative to the repository root, whose record blocks are generated (`*` is one
/// path segment).
pub const README_GLOBS: &[&str] = &["README.md", "experiments/*/README.md", "bench/README.md"];

const OPEN: &str = "<!-- record: ";
const CLOSE: &str = "<!-- end record -->";

/// `text` with every record block replaced by `render(name, table)`; `file` names the text in
/// errors.
///
/// # Errors
/// A marker without its end, a malformed marker, or what `render` returns.
pub fn regenerate(
    text: &str,
    file: &str,
    mut render: impl FnMut(&str, &str) -> Result<String, HarnessError>,
) -> Result<String, HarnessError> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n').enumerate();
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        let Some(rest) = line.trim().strip_prefix(OPEN) else {
            if line.trim() == CLOSE {
                return Err(HarnessError::input(format!(
                    "{file}:{}: '{CLOSE}' without its opening marker",
                    i + 1
                )));
            }
            continue;
        };
        let at = format!("{file}:{}", i + 1);
        let spec = rest.strip_suffix("-->").map(str::trim).unwrap_or_default();
        let Some((name, table)) = spec.split_once('/') else {
            return Err(HarnessError::input(format!(
                "{at}: a record marker reads '{OPEN}NAME/TABLE -->', got '{}'",
                line.trim()
            )));
        };
        if !lines.any(|(_, l)| l.trim() == CLOSE) {
            return Err(HarnessError::input(format!(
                "{at}: '{}' has no '{CLOSE}' after it",
                line.trim()
            )));
        }
        let block = render(name, table).map_err(|e| e.with_hint(&format!("at {at}")))?;
        out.push_str(block.trim_end());
        out.push('\n');
        out.push_str(CLOSE);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(name: &str, table: &str) -> Result<String, HarnessError> {
        Ok(format!("[{name} {table}]\n"))
    }

    #[test]
    fn blocks_are_replaced_and_the_rest_kept() {
        let text = "a\n<!-- record: x/means -->\nold\nlines\n<!-- end record -->\nb\n";
        let out = regenerate(text, "R.md", render).unwrap();
        assert_eq!(
            out,
            "a\n<!-- record: x/means -->\n[x means]\n<!-- end record -->\nb\n"
        );
        // Regenerating is a fixed point.
        assert_eq!(regenerate(&out, "R.md", render).unwrap(), out);
    }

    #[test]
    fn malformed_markers_are_errors_naming_the_line() {
        let e = regenerate("a\n<!-- record: x/means -->\nold\n", "R.md", render).unwrap_err();
        assert!(e.message().starts_with("R.md:2: "), "{e}");
        let e = regenerate(
            "<!-- record: nothing -->\n<!-- end record -->\n",
            "R.md",
            render,
        )
        .unwrap_err();
        assert!(e.message().contains("NAME/TABLE"), "{e}");
        let e = regenerate("x\n<!-- end record -->\n", "R.md", render).unwrap_err();
        assert!(e.message().starts_with("R.md:2: "), "{e}");
    }
}
