//! The JSON Schema of `sandbox.yaml`, derived (schemars) from the very types the parser reads it
//! into (`raw.rs` and the `Raw*` types beside it): `deny_unknown_fields` is
//! `additionalProperties: false`, serde's defaults are the schema's, doc comments its
//! descriptions. What the types cannot say (a duration's syntax, references between services)
//! stays the validator's.

use super::raw::RawConfig;

/// The JSON Schema (draft 2020-12) of `sandbox.yaml`.
pub(crate) fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RawConfig);
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// The repository's example, which the end-to-end tests deploy.
    fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox.yaml");
        std::fs::read_to_string(path).unwrap()
    }

    /// What Python's `jsonschema` says of `text` (YAML) against the schema: `None` when it
    /// accepts it, else its message. Panics without `jsonschema` under CI (scripts/setup installs
    /// it); elsewhere the test is skipped.
    fn python_verdict(text: &str) -> Option<Option<String>> {
        if Command::new("python3")
            .args(["-c", "import jsonschema"])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            assert!(
                std::env::var("CI").is_err(),
                "python3 with jsonschema is needed (scripts/setup)"
            );
            eprintln!("SKIPPED: python3 -c 'import jsonschema' fails");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let instance: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
        std::fs::write(dir.path().join("schema.json"), json_schema().to_string()).unwrap();
        std::fs::write(dir.path().join("file.json"), instance.to_string()).unwrap();
        let script = "import json, sys, jsonschema\n\
            schema = json.load(open(sys.argv[1]))\n\
            jsonschema.Draft202012Validator.check_schema(schema)\n\
            def messages(e): return [e.message] + [m for c in e.context for m in messages(c)]\n\
            errors = [m for e in jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))) for m in messages(e)]\n\
            print('\\n'.join(errors))\n";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(dir.path().join("schema.json"))
            .arg(dir.path().join("file.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let errors = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some((!errors.is_empty()).then_some(errors))
    }

    /// The whole parse, as if `text` were the example's file (its templates beside it).
    fn parser_verdict(text: &str) -> Result<(), String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox.yaml");
        super::super::parse(text, &path, &|_| Some("registry.example.com".into()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_is_valid_for_the_schema_and_the_parser() {
        let text = example();
        assert_eq!(parser_verdict(&text), Ok(()));
        if let Some(verdict) = python_verdict(&text) {
            assert_eq!(verdict, None);
        }
    }

    #[test]
    fn a_typo_is_refused_by_the_schema_and_the_parser_alike() {
        let text = example();
        for (right, typo) in [
            ("namespace_prefix:", "namespace_prefx:"),
            ("    depends_on: [db, cache]", "    dependson: [db, cache]"),
            ("  insecure_registries:", "  insecure_registry:"),
            ("      build:\n", "      biuld:\n"),
        ] {
            assert!(text.contains(right), "{right}");
            let wrong = text.replacen(right, typo, 1);
            let field = typo
                .trim()
                .trim_end_matches(|c| c != ':')
                .trim_end_matches(':');
            let parsed = parser_verdict(&wrong).unwrap_err();
            assert!(
                parsed.contains(&format!("unknown field `{field}`")),
                "{parsed}"
            );
            if let Some(verdict) = python_verdict(&wrong) {
                let verdict = verdict.expect("the schema accepts a typo");
                assert!(
                    verdict.contains(&format!("'{field}' was unexpected")),
                    "{verdict}"
                );
            }
        }
    }

    /// Every object the parser reads refuses unknown fields, and every top-level field it knows
    /// is in the schema (no Python needed).
    #[test]
    fn every_object_is_closed_and_every_field_is_described() {
        let schema = json_schema();
        let properties = schema["properties"].as_object().unwrap();
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(names, super::super::raw::TOP_FIELDS);
        let mut objects = vec![&schema];
        objects.extend(schema["$defs"].as_object().unwrap().values());
        for object in objects
            .into_iter()
            .filter(|o| o.get("properties").is_some())
        {
            assert_eq!(object["additionalProperties"], false, "{object}");
            for (name, field) in object["properties"].as_object().unwrap() {
                assert!(
                    field.get("description").is_some(),
                    "`{name}` has no doc comment"
                );
            }
        }
    }
}
