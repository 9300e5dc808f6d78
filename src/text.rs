//! Words and sizes as people write and read them: the "did you mean" of a mistyped name, and
//! sizes in bytes written as `512KiB` and printed as `1.5 MiB`.

/// "did you mean `x`?" for the closest candidate within a small edit distance (at most 2, or a
/// third of the candidate's length); the alphabetically first of equally close ones.
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Bytes from `4096`, `512KiB`, `1MiB`, `2GiB` (binary units; `KB`, `MB`, `GB` are decimal).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit_bytes)
}

/// `1 MiB`, `1.5 KiB`, `100 B`: a size for messages.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenths = (bytes % size) * 10 / size;
            return match tenths {
                0 => format!("{whole} {unit}"),
                t => format!("{whole}.{t} {unit}"),
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_for_close_words() {
        assert_eq!(
            suggest("depnds_on", &["depends_on", "repo"]).unwrap(),
            "did you mean `depends_on`?"
        );
        assert_eq!(suggest("zzz", &["depends_on", "repo"]), None);
    }

    #[test]
    fn the_closest_suggestion_wins_and_ties_go_alphabetically() {
        assert_eq!(
            suggest("max_tree_file", &["max_tree_size", "max_tree_files"]).unwrap(),
            "did you mean `max_tree_files`?"
        );
        assert_eq!(suggest("ab", &["ac", "aa"]).unwrap(), "did you mean `aa`?");
        // A swap of two letters is two edits (Levenshtein), so three of them are too far.
        assert_eq!(suggest("ba", &["ab"]).unwrap(), "did you mean `ab`?");
        assert_eq!(suggest("badcfe", &["abcdef"]), None);
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("42"), Some(42));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "1 PiB",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(1023), "1023 B");
    }
}
