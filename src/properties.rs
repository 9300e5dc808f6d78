//! Property tests for every parser of untrusted input (issue 14): whatever a branch, a webhook
//! or a command line hands them, they return a value or an error — never a panic — and the
//! names they derive are always valid. Inputs are bounded in size, so a case that hangs or
//! explodes in memory shows up as a test that does not finish.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;

use crate::object::is_dns1123_label;
use crate::pipeline::config;
use crate::pipeline::render::parse_manifests;
use crate::pipeline::sops::{self, Format, Identities};
use crate::pipeline::values::{Segment, SetKind, SetValue};
use crate::record::namespace_for;
use crate::serve::event;
use crate::yaml;

/// Text that looks enough like YAML to reach past the first parser check: keys of the config's
/// schema, indentation, flow collections, anchors, aliases, tags and quotes.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("name: shop\n".to_owned()),
        Just("namespace_prefix: sbx-\n".to_owned()),
        Just("ttl: 2d\n".to_owned()),
        Just("repos:\n".to_owned()),
        Just("  backend:\n".to_owned()),
        Just("    url: ${REPOS}/backend\n".to_owned()),
        Just("    default_branch: main\n".to_owned()),
        Just("services:\n".to_owned()),
        Just("  api:\n".to_owned()),
        Just("    repo: backend\n".to_owned()),
        Just("    templates: deploy\n".to_owned()),
        Just("    chart: charts/api\n".to_owned()),
        Just("    depends_on: [db]\n".to_owned()),
        Just("    values: {a: 1}\n".to_owned()),
        Just("    image: {repository: x}\n".to_owned()),
        Just("timeouts: {ready: 5m}\n".to_owned()),
        Just("helm: {kube_version: 1.2.3}\n".to_owned()),
        Just("- &a [x, *a]\n".to_owned()),
        Just("? !!binary aGk=\n".to_owned()),
        Just("\"\\u0000\": '''\n".to_owned()),
        // sops files: the metadata map and encrypted leaves, well and badly formed.
        Just("sops:\n".to_owned()),
        Just("  mac: ENC[AES256_GCM,data:AAAA,iv:AAAAAAAAAAAAAAAA,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]\n".to_owned()),
        Just("  age:\n    - recipient: age1qqqq\n      enc: x\n".to_owned()),
        Just("  hc_vault: [{vault_address: http://evil, engine_path: x, key_name: k}]\n".to_owned()),
        Just("  version: 3.9.0\n  lastmodified: \"2026-01-01T00:00:00Z\"\n".to_owned()),
        Just("  encrypted_regex: ^(data|[\n".to_owned()),
        Just("password: ENC[AES256_GCM,data:,iv:,tag:,type:int]\n".to_owned()),
        Just("&b [*b, *b, *b]\n".to_owned()),
        "[ -~]{0,24}\n",
        "\\PC{0,8}",
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `sandbox.yaml`: any text is a config or an error that names the file.
    #[test]
    fn the_config_parser_never_panics(text in yamlish()) {
        let env = |name: &str| (name == "REPOS").then(|| "/srv/git".to_owned());
        if let Err(e) = config::parse(&text, Path::new("sandbox.yaml"), &env) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// `--set`, `--set-string`, `--set-json`: any argument is assignments, each with a service and
    /// a key, or an error.
    #[test]
    fn set_arguments_never_panic(arg in "\\PC{0,40}") {
        for kind in [SetKind::Typed, SetKind::String, SetKind::Json] {
            if let Ok(set) = SetValue::parse(&arg, kind) {
                prop_assert!(!set.assignments.is_empty());
                for a in &set.assignments {
                    prop_assert!(!a.service.is_empty() && !a.merge);
                    prop_assert!(!a.path.is_empty());
                    prop_assert!(a.path.iter().all(|p| p != &Segment::Key(String::new())));
                }
            }
        }
    }

    /// Rendered output (templates and helm): any text is manifests or an error.
    #[test]
    fn the_manifest_parser_never_panics(text in yamlish()) {
        let _ = parse_manifests("deploy/x.yaml", &text);
    }

    /// YAML from a branch: the expansion check never panics, and whatever it lets through
    /// parses without exceeding what it counted (here: the parse finishes).
    #[test]
    fn the_yaml_expansion_check_never_panics(text in yamlish()) {
        if yaml::check_expansion(&text).is_ok() {
            let _ = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text);
        }
    }

    /// sops files: any text, as YAML or JSON, decrypts or is an error — and with no identities
    /// and the hand-off off (the default), nothing is handed to a `sops` binary.
    #[test]
    fn sops_documents_never_panic(text in yamlish(), json in json_value(3)) {
        let ids = Identities::default();
        let _ = sops::decrypt(&text, Format::Yaml, Path::new("secrets.yaml"), &ids);
        let _ = sops::decrypt(&json.to_string(), Format::Json, Path::new("s.json"), &ids);
    }

    /// Webhook bodies: any bytes for any event are an event or an error.
    #[test]
    fn webhook_bodies_never_panic(
        name in prop_oneof![
            Just("ping".to_owned()),
            Just("pull_request".to_owned()),
            Just("push".to_owned()),
            "[a-z_]{0,12}",
        ],
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = event::parse(&name, &body);
    }

    /// Webhook bodies that are JSON of the right outline but wrong types or missing fields.
    #[test]
    fn pull_request_payloads_of_any_shape_never_panic(body in json_value(3)) {
        let _ = event::parse("pull_request", body.to_string().as_bytes());
        let _ = event::parse("ping", body.to_string().as_bytes());
    }

    /// Branch → namespace: always a DNS-1123 label of at most 63 characters, starting with the
    /// prefix's first character, whatever the branch.
    #[test]
    fn every_branch_maps_to_a_valid_namespace(
        prefix in "[a-z][a-z0-9-]{0,14}",
        branch in "\\PC{1,90}",
    ) {
        let name = namespace_for(&prefix, &branch);
        prop_assert!(is_dns1123_label(&name), "{name:?} from {branch:?}");
    }

    /// Distinct branches get distinct namespaces: branches that differ only in case or
    /// punctuation, or share a long prefix, or look like another branch's hashed name.
    #[test]
    fn distinct_branches_get_distinct_namespaces(
        stems in proptest::collection::btree_set("[a-zA-Z0-9/._-]{1,80}", 1..24),
    ) {
        let mut branches: BTreeSet<String> = stems.clone();
        for stem in &stems {
            // The variants a careless mapping would fold together.
            branches.insert(stem.to_uppercase());
            branches.insert(stem.replace('/', "-"));
            branches.insert(format!("{stem}/"));
            let hashed = namespace_for("sbx-", stem);
            if let Some(rest) = hashed.strip_prefix("sbx-") {
                branches.insert(rest.to_owned());
            }
        }
        let mut seen = std::collections::BTreeMap::new();
        for branch in &branches {
            let name = namespace_for("sbx-", branch);
            if let Some(other) = seen.insert(name.clone(), branch.clone()) {
                prop_assert!(false, "{other:?} and {branch:?} both map to {name}");
            }
        }
    }
}

proptest! {
    // Each case counts a million nodes or more: a few widths suffice.
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Alias bombs of every width past the limit are refused.
    #[test]
    fn alias_bombs_are_refused(width in 1_100usize..3_000) {
        prop_assert!(yaml::check_expansion(&yaml::bombs::quadratic_alias(width)).is_err());
    }
}

/// Arbitrary JSON, `depth` levels deep, with the keys a pull_request payload has.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        let key = prop_oneof![
            Just("action".to_owned()),
            Just("number".to_owned()),
            Just("pull_request".to_owned()),
            Just("repository".to_owned()),
            Just("full_name".to_owned()),
            Just("head".to_owned()),
            Just("ref".to_owned()),
            Just("sha".to_owned()),
            Just("repo".to_owned()),
            Just("user".to_owned()),
            Just("login".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
