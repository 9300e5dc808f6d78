//! Tables as kubectl prints them: upper-case headers, columns as wide as their widest cell
//! (elastic tabstops, Go's text/tabwriter), three spaces between; `-o wide` adds columns and
//! `-o name` prints only the first.

use std::io::Write;

/// A table of text cells; the columns marked wide show only with `-o wide`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    columns: Vec<(&'static str, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns: `(HEADER, wide only)`.
    pub(crate) fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// One row, a cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// The table as text, with the wide columns or without.
    pub(crate) fn render(&self, wide: bool) -> String {
        let shown: Vec<usize> = (0..self.columns.len())
            .filter(|&i| wide || !self.columns[i].1)
            .collect();
        let line = |cells: Vec<&str>| {
            // A tab or newline inside a cell would break the columns: cells are single-line.
            let cells: Vec<String> = cells.iter().map(|c| c.replace(['\t', '\n'], " ")).collect();
            format!("{}\n", cells.join("\t"))
        };
        let mut text = line(shown.iter().map(|&i| self.columns[i].0).collect());
        for row in &self.rows {
            text.push_str(&line(shown.iter().map(|&i| row[i].as_str()).collect()));
        }
        let mut writer = tabwriter::TabWriter::new(Vec::new()).padding(3);
        writer
            .write_all(text.as_bytes())
            .and_then(|()| writer.flush())
            .expect("writing to memory");
        let aligned = writer.into_inner().expect("flushed");
        let aligned = String::from_utf8(aligned).expect("UTF-8 in, UTF-8 out");
        // tabwriter pads the last column too; kubectl's lines end at their last character.
        aligned
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }

    /// `-o name`: the first column of each row.
    pub(crate) fn names(&self) -> String {
        self.rows.iter().map(|r| format!("{}\n", r[0])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 63-character namespace (the longest there is) and a long URL keep every column
    /// aligned: each header starts where its cells start, on every line.
    #[test]
    fn long_cells_widen_their_column_and_keep_the_others_aligned() {
        let mut table = Table::new(&[("NAMESPACE", false), ("STATUS", false), ("OWNER", true)]);
        let long = format!("sb-{}", "x".repeat(60));
        table.row(vec![long.clone(), "ready".into(), "alice".into()]);
        table.row(vec![
            "sb-a".into(),
            "deploying".into(),
            "bob\tand\ncarol".into(),
        ]);
        let text = table.render(true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let status_at = lines[0].find("STATUS").unwrap();
        let owner_at = lines[0].find("OWNER").unwrap();
        assert_eq!(status_at, long.len() + 3, "{text}");
        for line in &lines[1..] {
            let cells: Vec<&str> = line.split("   ").filter(|c| !c.trim().is_empty()).collect();
            assert_eq!(cells.len(), 3, "{line}");
            assert_eq!(line.find(cells[1].trim()).unwrap(), status_at, "{text}");
            assert_eq!(line.find(cells[2].trim()).unwrap(), owner_at, "{text}");
        }
        assert!(lines[2].ends_with("bob and carol"), "{text}");
        assert!(!table.render(false).contains("OWNER"));
        assert_eq!(table.names(), format!("{long}\nsb-a\n"));
    }
}
