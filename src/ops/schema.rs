//! `sandbox schema`: the JSON Schema of `sandbox.yaml` (from the parser's own types), and the
//! field reference `docs/reference/sandbox-yaml.md` rendered from it.

use serde_json::Value;

pub(crate) use crate::pipeline::config::json_schema;

/// The field reference: one section per object, a row per field.
pub(crate) fn markdown(schema: &Value) -> String {
    let mut out = String::from(
        "# `sandbox.yaml` reference\n\n\
         <!-- Generated from the JSON Schema by `sandbox schema --markdown`; do not edit.\n     \
         A unit test (ops::schema) fails when this file is stale. -->\n\n",
    );
    out += &format!(
        "{}\n\n",
        one_line(schema["description"].as_str().unwrap_or(""))
    );
    out += "Editors that speak the YAML language server complete and check the file when its \
            first line is `# yaml-language-server: $schema=sandbox.schema.json` (`sandbox schema \
            > sandbox.schema.json`; `sandbox init` writes both). Durations are written like \
            `90s`, `5m`, `2d`; sizes like `512KiB`, `1MiB` or a number of bytes; `${VAR}` is \
            replaced from the environment where a field says so.\n";
    let mut sections = vec![(String::new(), schema.clone())];
    let mut index = 0;
    while index < sections.len() {
        let (path, object) = sections[index].clone();
        out += &section(schema, &path, &object, &mut sections);
        index += 1;
    }
    out
}

/// One object's table; the objects among its fields are queued as their own sections.
fn section(
    root: &Value,
    path: &str,
    object: &Value,
    sections: &mut Vec<(String, Value)>,
) -> String {
    let mut out = if path.is_empty() {
        "\n## Top level\n\n".to_owned()
    } else {
        format!("\n## `{path}`\n\n")
    };
    if !path.is_empty() {
        if let Some(description) = object["description"].as_str() {
            out += &format!("{}\n\n", one_line(description));
        }
    }
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out += "| field | type | required | default | description |\n|---|---|---|---|---|\n";
    for (name, field) in object["properties"].as_object().into_iter().flatten() {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        queue_objects(root, &child, field, sections);
        out += &format!(
            "| `{name}` | {} | {} | {} | {} |\n",
            type_of(root, field),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                ""
            },
            default_of(field),
            one_line(field["description"].as_str().unwrap_or("")).replace('|', "\\|"),
        );
    }
    out
}

/// Queue the object `field` holds (directly, per key of a map, per item of a list).
fn queue_objects(root: &Value, path: &str, field: &Value, sections: &mut Vec<(String, Value)>) {
    let field = resolve(root, field);
    if field.get("properties").is_some() {
        if !sections.iter().any(|(p, _)| p == path) {
            sections.push((path.to_owned(), field.clone()));
        }
    } else if let Some(values) = field.get("additionalProperties").filter(|v| v.is_object()) {
        queue_objects(root, &format!("{path}.NAME"), values, sections);
    } else if let Some(items) = field.get("items") {
        queue_objects(root, &format!("{path}[]"), items, sections);
    } else if let Some(any) = field.get("anyOf").and_then(Value::as_array) {
        for option in any {
            queue_objects(root, path, option, sections);
        }
    }
}

/// A `$ref`'s target (with the referring schema's own description kept).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// How a field's type reads: `string`, `list of string`, `map of NAME → Repo`, `"a" \| "b"`.
fn type_of(root: &Value, schema: &Value) -> String {
    let target = resolve(root, schema);
    if let Some(values) = target["enum"].as_array() {
        return alternatives(values);
    }
    if let Some(variants) = target["oneOf"].as_array() {
        let consts: Vec<Value> = variants
            .iter()
            .filter_map(|v| v.get("const").cloned())
            .collect();
        if consts.len() == variants.len() {
            return alternatives(&consts);
        }
    }
    if let Some(any) = target["anyOf"].as_array() {
        let kinds: Vec<String> = any
            .iter()
            .filter(|o| o["type"] != "null")
            .map(|o| type_of(root, o))
            .collect();
        return kinds.join(" or ");
    }
    if target.get("properties").is_some() {
        return "object".into();
    }
    let kinds: Vec<&str> = match &target["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => return "any".into(),
    };
    let kind = kinds.into_iter().find(|k| *k != "null").unwrap_or("null");
    match kind {
        "array" => format!("list of {}", type_of(root, &target["items"])),
        "object" => match target.get("additionalProperties") {
            Some(values) if values.is_object() => {
                format!("map of NAME → {}", type_of(root, values))
            }
            _ => "map".into(),
        },
        other => other.to_owned(),
    }
}

fn alternatives(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    shown.join(" \\| ")
}

/// A scalar default, as written in YAML (empty lists and maps go without saying).
fn default_of(field: &Value) -> String {
    match &field["default"] {
        Value::String(s) => format!("`{s}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        _ => String::new(),
    }
}

/// Doc comments' lines joined into one table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the reference is checked in.
    const REFERENCE: &str = "docs/reference/sandbox-yaml.md";

    /// CI fails when the checked-in reference is not what the schema renders to.
    #[test]
    fn the_checked_in_reference_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE);
        let rendered = markdown(&json_schema());
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == rendered,
            "{REFERENCE} is stale: regenerate it with\n  cargo run -q -- schema --markdown > {REFERENCE}"
        );
    }

    #[test]
    fn every_field_is_in_the_reference_with_its_type() {
        let text = markdown(&json_schema());
        for row in [
            "| `apiVersion` | `\"sandbox.dev/v1\"` |",
            "| `name` | string | yes |",
            "| `namespace_prefix` | string |  | `sb-` |",
            "## `services.NAME.image.build`",
            "## `network_policy.allow_from[]`",
            "| `pod_security` | `\"privileged\"` \\| `\"baseline\"` \\| `\"restricted\"` |",
        ] {
            assert!(text.contains(row), "{row} not in:\n{text}");
        }
    }
}
