//! Text from outside (branch names, errors) made safe for where serve writes it: a Markdown
//! comment (a code span nothing inside can close, a URL that cannot turn into a link
//! elsewhere), a Slack message (no links or mentions smuggled in), and cut to a length.

/// `text` as a Markdown code span nothing inside can close or break out of: fenced by one
/// backtick more than its longest run of backticks, padded with a space where it starts or ends
/// with one (CommonMark). A branch is pushed by anyone with write access, and a name with a
/// backtick would otherwise end the span and inject links or images into the comment.
pub(crate) fn markdown_code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// [`markdown_code`] for a cell of a GFM table, where an unescaped `|` ends the cell even
/// inside a code span.
pub(crate) fn markdown_cell_code(text: &str) -> String {
    markdown_code(text).replace('|', "\\|")
}

/// A URL for a Markdown comment: an autolink when it is a plain http(s) URL, else code.
pub(crate) fn markdown_url(url: &str) -> String {
    let plain = (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '`' | '\\'));
    if plain {
        format!("<{url}>")
    } else {
        markdown_code(url)
    }
}

/// `text` for a Slack message: `&`, `<` and `>` escaped as Slack asks, so that a branch named
/// `<https://evil.example|docs>` or `<!channel>` stays text instead of a link or a mention.
pub(crate) fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` as Slack inline code: escaped, and its backticks (Slack has no escape for them inside
/// code) shown as `'`.
pub(crate) fn slack_code(text: &str) -> String {
    format!("`{}`", slack_text(text).replace('`', "'"))
}

/// At most `limit` characters, cut on a character boundary with `…` where it was cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_to_a_limit_on_character_boundaries() {
        assert_eq!(truncate("short", 140), "short");
        let long = "é".repeat(200);
        // GitHub's limit of a deployment status's description.
        let cut = truncate(&long, 140);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }
}
