//! Bounds on what a YAML text may expand to, checked before it is parsed for real.
//!
//! An alias (`*a`) stands for the whole node its anchor (`&a`) holds, so a small text can stand
//! for a huge tree. serde_yaml_ng stops exponential nesting of aliases (at 100 alias expansions
//! per event of the document) but not quadratic fan-out: a list of 10,000 items anchored once and
//! aliased 10,000 times is ~150 KB of text and 10⁸ nodes. Every YAML text that comes from a
//! branch (values and sops files, rendered templates, helm's output), and `sandbox.yaml`, passes
//! [`check_expansion`] first: it walks the documents as the deserializer expands them, counting
//! nodes and depth, and stops at the first node over [`MAX_NODES`] or [`MAX_DEPTH`], so a bomb
//! costs at most [`MAX_NODES`] steps. Callers then parse as before, with their own error types
//! and positions; this check only adds a typed error that names the limit.
//!
//! And, for errors found once a text is parsed, [`locate_line`]: the line a key is written on.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::Hint;

/// The most nodes (scalars, sequences, mappings, keys included) all documents of one text may
/// expand to. Kubernetes objects and values files have thousands; a million leaves room for any
/// real file and bounds a bomb to well under a second.
pub(crate) const MAX_NODES: usize = 1_000_000;

/// The deepest nesting allowed. serde_yaml_ng gives up at 128 with a terse message; stopping
/// below it gives the clear one.
pub(crate) const MAX_DEPTH: usize = 100;

/// A YAML text that expands beyond the bounds. The caller's error names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum YamlTooLarge {
    /// More than [`MAX_NODES`] nodes once aliases are expanded.
    #[error("expands to more than {limit} YAML nodes{}", at_line(*line))]
    Nodes { limit: usize, line: Option<usize> },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nests YAML deeper than {limit} levels{}", at_line(*line))]
    Depth { limit: usize, line: Option<usize> },
}

impl YamlTooLarge {
    /// The line (1-based) where the bound was crossed, when known.
    pub(crate) fn line(&self) -> Option<usize> {
        match self {
            YamlTooLarge::Nodes { line, .. } | YamlTooLarge::Depth { line, .. } => *line,
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (at line {l})")).unwrap_or_default()
}

impl Hint for YamlTooLarge {
    fn hint(&self) -> Option<String> {
        Some(match self {
            YamlTooLarge::Nodes { limit, .. } => format!(
                "each alias (`*name`) repeats everything its anchor (`&name`) holds; sandbox \
                 reads YAML of at most {limit} nodes once aliases are expanded: write the \
                 repeated parts out once, or split the file"
            ),
            YamlTooLarge::Depth { limit, .. } => {
                format!("sandbox reads YAML nested at most {limit} levels deep: flatten it")
            }
        })
    }
}

/// Check that every document of `text` stays within [`MAX_NODES`] and [`MAX_DEPTH`].
///
/// A text that is not valid YAML passes: the caller's own parse reports the syntax error with
/// its position (and, failing at the same place, never expands past it).
pub(crate) fn check_expansion(text: &str) -> Result<(), YamlTooLarge> {
    check_expansion_within(text, MAX_NODES, MAX_DEPTH)
}

/// [`check_expansion`] with other limits (for tests).
fn check_expansion_within(
    text: &str,
    max_nodes: usize,
    max_depth: usize,
) -> Result<(), YamlTooLarge> {
    let mut count = Count {
        nodes: 0,
        max_nodes,
        max_depth,
        exceeded: None,
    };
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let seed = NodeSeed {
            count: &mut count,
            depth: 0,
        };
        if let Err(e) = seed.deserialize(document) {
            let line = e.location().map(|l| l.line());
            return match count.exceeded {
                Some(Exceeded::Nodes) => Err(YamlTooLarge::Nodes {
                    limit: max_nodes,
                    line,
                }),
                Some(Exceeded::Depth) => Err(YamlTooLarge::Depth {
                    limit: max_depth,
                    line,
                }),
                None => Ok(()), // a syntax error: the caller's parse reports it
            };
        }
    }
    Ok(())
}

/// Which bound was crossed (the deserializer's error only carries a message and a position).
#[derive(Clone, Copy)]
enum Exceeded {
    Nodes,
    Depth,
}

/// Nodes seen so far, across the documents of one text.
struct Count {
    nodes: usize,
    max_nodes: usize,
    max_depth: usize,
    exceeded: Option<Exceeded>,
}

/// Deserializes one node (whatever it is) by counting it and its children. Through
/// `deserialize_any`, serde_yaml_ng replays an alias's anchored node in full, so expansions are
/// counted as the real parse would build them.
struct NodeSeed<'a> {
    count: &'a mut Count,
    depth: usize,
}

impl NodeSeed<'_> {
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.count.nodes += 1;
        if self.count.nodes > self.count.max_nodes {
            self.count.exceeded = Some(Exceeded::Nodes);
            return Err(E::custom("too many nodes"));
        }
        if self.depth > self.count.max_depth {
            self.count.exceeded = Some(Exceeded::Depth);
            return Err(E::custom("too deep"));
        }
        Ok(())
    }

    fn child(&mut self) -> NodeSeed<'_> {
        NodeSeed {
            count: self.count,
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.enter()
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.enter()
    }
    fn visit_i128<E: de::Error>(mut self, _: i128) -> Result<(), E> {
        self.enter()
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.enter()
    }
    fn visit_u128<E: de::Error>(mut self, _: u128) -> Result<(), E> {
        self.enter()
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.enter()
    }
    fn visit_str<E: de::Error>(mut self, _: &str) -> Result<(), E> {
        self.enter()
    }
    fn visit_bytes<E: de::Error>(mut self, _: &[u8]) -> Result<(), E> {
        self.enter()
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.enter()
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.enter()
    }

    fn visit_some<D: Deserializer<'de>>(mut self, deserializer: D) -> Result<(), D::Error> {
        self.enter()?;
        self.child().deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.child())?.is_some() {
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }

    // A tagged node (`!Tag value`): the tag, then the value.
    fn visit_enum<A: de::EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        self.enter()?;
        let ((), variant) = data.variant_seed(self.child())?;
        de::VariantAccess::newtype_variant_seed(variant, self.child())
    }
}

/// The 1-based line of a nested key in block-style YAML, or of the deepest parent found.
///
/// serde forgets positions once a value is parsed, so checks made after parsing (missing
/// references, cycles) find their line again by walking the keys through the indentation.
pub(crate) fn locate_line(text: &str, keys: &[&str]) -> usize {
    let mut best = 1;
    let mut min_indent: isize = -1;
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    'keys: for key in keys {
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = (line.len() - trimmed.len()) as isize;
            if i > start && indent <= min_indent {
                break; // left the parent's block
            }
            let bare = trimmed.trim_start_matches("- ");
            if bare.starts_with(&format!("{key}:"))
                || bare.starts_with(&format!("\"{key}\":"))
                || bare.starts_with(&format!("{{ {key}:"))
            {
                best = i + 1;
                min_indent = indent;
                start = i + 1;
                continue 'keys;
            }
        }
        break;
    }
    best
}

/// YAML texts that expand far beyond their size, for the tests of every YAML reader.
#[cfg(test)]
pub(crate) mod bombs {
    /// A list of `width` scalars anchored once, then a list aliasing it `width` times: about
    /// `8 * width` bytes of text and `width²` nodes.
    pub(crate) fn quadratic_alias(width: usize) -> String {
        use std::fmt::Write as _;
        let mut text = String::from("base: &a [");
        for i in 0..width {
            let _ = write!(text, "{}{i}", if i == 0 { "" } else { "," });
        }
        text.push_str("]\nbomb: [");
        for i in 0..width {
            text.push_str(if i == 0 { "*a" } else { ",*a" });
        }
        text.push_str("]\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_quadratic_alias_bomb_is_refused_quickly() {
        let bomb = bombs::quadratic_alias(28_000);
        assert!(
            bomb.len() > 190_000 && bomb.len() < 260_000,
            "{}",
            bomb.len()
        );
        let started = Instant::now();
        let refused = check_expansion(&bomb).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                refused,
                YamlTooLarge::Nodes {
                    limit: MAX_NODES,
                    line: Some(_)
                }
            ),
            "{refused:?}"
        );
        assert!(refused
            .to_string()
            .starts_with("expands to more than 1000000 YAML nodes"));
        eprintln!("a {} byte alias bomb was refused in {took:?}", bomb.len());
        // Unchecked, serde_yaml_ng builds its 784 million nodes (minutes, gigabytes): the
        // refusal above, not a stopwatch, is the check (no timed assertions in tests).
    }

    #[test]
    fn aliases_count_what_they_expand_to() {
        // 3 + 3 aliases of a 4-node list: 1 (map) + 2 keys + 4 + (1 + 3×4) = 20 nodes.
        let text = "a: &x [1, 2, 3]\nb: [*x, *x, *x]\n";
        assert_eq!(check_expansion_within(text, 20, 10), Ok(()));
        assert!(matches!(
            check_expansion_within(text, 19, 10),
            Err(YamlTooLarge::Nodes { limit: 19, .. })
        ));
    }

    #[test]
    fn nodes_of_every_document_add_up() {
        let text = "a: 1\n---\nb: 2\n";
        assert_eq!(check_expansion_within(text, 6, 10), Ok(()));
        assert!(check_expansion_within(text, 5, 10).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        assert!(matches!(
            check_expansion(&deep),
            Err(YamlTooLarge::Depth {
                limit: MAX_DEPTH,
                line: Some(1)
            })
        ));
        let fine = format!("{}1{}", "[".repeat(50), "]".repeat(50));
        assert_eq!(check_expansion(&fine), Ok(()));
    }

    #[test]
    fn ordinary_documents_and_syntax_errors_pass() {
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: !!map {a: b}\n";
        assert_eq!(check_expansion(manifest), Ok(()));
        assert_eq!(check_expansion("a: !Custom {b: 1}\n"), Ok(()));
        assert_eq!(check_expansion(""), Ok(()));
        // Left to the caller's parse, which says where.
        assert_eq!(check_expansion("a: [1, 2\n"), Ok(()));
    }

    #[test]
    fn locate_line_walks_nested_keys() {
        let text = "a:\n  b:\n    c: 1\n  d:\n    c: 2\n";
        assert_eq!(locate_line(text, &["a", "d", "c"]), 5);
        assert_eq!(locate_line(text, &["a", "b", "c"]), 3);
        assert_eq!(locate_line(text, &["a", "x"]), 1);
    }
}
