use super::*;
use crate::error::Hint;
use error::RenderErrorKind;
use helpers::FileProblem;
use serde_json::json;
use std::error::Error as _;
use std::path::Path;

fn ctx() -> Value {
    json!({
        "values": {
            "replicas": 2,
            "zero": 0,
            "empty": "",
            "nothing": null,
            "image": {"repository": "registry.example.com/api"},
            "database": {"url": "postgres://db:5432/app", "port": 5432},
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
            "list": ["a", "b"],
            "secret": "s3cr3t",
            "multi": "a\n\nb\n"
        },
        "sandbox": {"name": "feature-x", "branch": "feature/x", "namespace": "sb-feature-x"},
        "repo": {"name": "api", "branch": "feature/x", "sha": "0123456789abcdef", "short_sha": "0123456", "fell_back": false},
        "services": {"api": {"host": "api.sb-feature-x.svc", "port": 8080}, "db": {"host": "db", "port": 5432}},
        "service": {"name": "api"}
    })
}

fn tpl(text: &str) -> TemplateSource {
    TemplateSource {
        name: "templates/test.yaml".to_owned(),
        text: text.to_owned(),
    }
}

fn text(template: &str) -> Result<String, RenderError> {
    Renderer::new(None).render_text(&tpl(template), &ctx())
}

fn ok(template: &str) -> String {
    text(template).unwrap_or_else(|e| panic!("{template}: {e} ({:?})", e.source()))
}

fn err(template: &str) -> RenderError {
    match text(template) {
        Ok(out) => panic!("{template}: expected an error, got {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn error_type_is_send_sync_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<RenderError>();
    check::<Renderer>();
    // Small enough for `Result<_, RenderError>` (clippy::result_large_err).
    assert!(std::mem::size_of::<RenderError>() < 128);
}

#[test]
fn plain_values_and_no_html_escaping() {
    assert_eq!(ok("{{sandbox.name}}/{{values.replicas}}"), "feature-x/2");
    assert_eq!(ok("{{values.database.url}}"), "postgres://db:5432/app");
    assert_eq!(
        Renderer::new(None)
            .render_text(
                &tpl("{{values.x}}"),
                &json!({"values": {"x": "<a href='x'>&</a>"}})
            )
            .unwrap(),
        "<a href='x'>&</a>"
    );
}

#[test]
fn strict_mode_missing_value_names_template_line_and_path() {
    let e = err("a: 1\nb: {{values.database.host}}\n");
    match &e {
        RenderError {
            template,
            line,
            column,
            kind: RenderErrorKind::MissingValue { path, nearest },
        } => {
            assert_eq!(template, "templates/test.yaml");
            assert_eq!(*line, Some(2));
            assert!(column.is_some());
            assert_eq!(path.as_deref(), Some("values.database.host"));
            let nearest = nearest.as_deref().unwrap();
            assert_eq!(nearest.path, "values.database");
            assert_eq!(nearest.keys, ["url", "port"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.starts_with("templates/test.yaml:2:"), "{msg}");
    assert!(msg.contains("`values.database.host`"), "{msg}");
    let hint = e.hint().unwrap();
    assert!(hint.contains("add `database.host`"), "{hint}");
    assert!(
        hint.contains("{{default values.database.host \"…\"}}"),
        "{hint}"
    );
    assert!(hint.contains("`values.database` has: url, port"), "{hint}");

    // A missing intermediate object.
    match err("{{values.cache.host}}") {
        RenderError {
            kind: RenderErrorKind::MissingValue { path, nearest, .. },
            ..
        } => {
            assert_eq!(path.as_deref(), Some("values.cache.host"));
            assert_eq!(nearest.unwrap().path, "values");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Outside `values`.
    let e = err("{{services.redis.host}}");
    let hint = e.hint().unwrap();
    assert!(hint.contains("`services` has: api, db"), "{hint}");
}

#[test]
fn missing_value_inside_blocks_reports_inner_line() {
    let e = err("x:\n{{#each values.list}}\n  - {{this}}\n  - {{values.nope}}\n{{/each}}\n");
    assert_eq!(e.line, Some(4), "{e}");
    let e = err("{{#if values.replicas}}\n\n{{values.nope}}{{/if}}");
    assert_eq!(e.line, Some(3), "{e}");
    // `if` on a missing value is false, not an error.
    assert_eq!(ok("{{#if values.nope}}yes{{else}}no{{/if}}"), "no");
    // `each` over a missing value is an error.
    assert!(matches!(
        err("{{#each values.nope}}{{this}}{{/each}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
    // `each` over a scalar or null, `with` over null: the value exists but is unusable.
    let e = err("{{#each values.replicas}}{{this}}{{/each}}");
    assert!(
        matches!(&e, RenderError { kind: RenderErrorKind::UnusableValue { path, found, .. }, .. } if path == "values.replicas" && found == "a number (2)"),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("{{else}}"));
    assert!(matches!(
        err("{{#with values.nothing}}x{{/with}}"),
        RenderError {
            kind: RenderErrorKind::UnusableValue { .. },
            ..
        }
    ));
    assert_eq!(ok("{{#each values.nothing}}x{{else}}none{{/each}}"), "none");
    assert_eq!(ok("{{#with values.database}}{{port}}{{/with}}"), "5432");
}

#[test]
fn default_helper() {
    assert_eq!(ok("{{default values.missing \"fallback\"}}"), "fallback");
    assert_eq!(ok("{{default values.a.b.c \"deep\"}}"), "deep");
    assert_eq!(ok("{{default values.nothing \"n\"}}"), "n");
    assert_eq!(ok("{{default values.empty \"e\"}}"), "e");
    assert_eq!(ok("{{default values.replicas 1}}"), "2");
    assert_eq!(ok("{{default values.zero 1}}"), "0");
    assert_eq!(ok("{{default values.missing repo.short_sha}}"), "0123456");
    // Composes as a subexpression.
    assert_eq!(ok("{{quote (default values.missing 3)}}"), "\"3\"");
    // A missing fallback is still strict.
    assert!(matches!(
        err("{{default values.missing values.alsoMissing}}"),
        RenderError { kind: RenderErrorKind::MissingValue { path: Some(p), .. }, .. } if p == "values.alsoMissing"
    ));
    assert!(matches!(
        err("{{default values.missing}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
}

#[test]
fn quote_helper() {
    assert_eq!(ok("{{quote sandbox.name}}"), "\"feature-x\"");
    assert_eq!(ok("{{quote values.replicas}}"), "\"2\"");
    assert_eq!(
        Renderer::new(None)
            .render_text(&tpl("{{quote x}}"), &json!({"x": "a \"b\"\n\\c"}))
            .unwrap(),
        r#""a \"b\"\n\\c""#
    );
    assert_eq!(ok("{{quote \"a\" \"b\"}}"), "\"a\" \"b\"");
    assert!(matches!(
        err("{{quote values.nope}}"),
        RenderError { kind: RenderErrorKind::MissingValue { path: Some(p), .. }, .. } if p == "values.nope"
    ));
    let e = err("{{quote values.resources}}");
    assert!(
        matches!(&e, RenderError { kind: RenderErrorKind::Helper { helper, .. }, .. } if *helper == "quote"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`values.resources`"), "{e}");
    assert!(e.hint().unwrap().starts_with("usage: {{quote"));
}

#[test]
fn required_helper() {
    assert_eq!(
        ok("{{required values.database.url \"need db\"}}"),
        "postgres://db:5432/app"
    );
    let e = err("a: 1\n{{required values.database.host \"the api needs a database host\"}}");
    match &e {
        RenderError {
            line,
            kind: RenderErrorKind::Required { path, message },
            ..
        } => {
            assert_eq!(*line, Some(2));
            assert_eq!(path.as_deref(), Some("values.database.host"));
            assert_eq!(message, "the api needs a database host");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("the api needs a database host"));
    assert!(e.hint().unwrap().contains("`database.host`"));
    assert!(matches!(
        err("{{required values.empty \"m\"}}"),
        RenderError {
            kind: RenderErrorKind::Required { .. },
            ..
        }
    ));
    assert!(matches!(
        err("{{required values.nothing \"m\"}}"),
        RenderError {
            kind: RenderErrorKind::Required { .. },
            ..
        }
    ));
    assert_eq!(ok("{{required values.zero \"m\"}}"), "0");
}

#[test]
fn b64enc_helper() {
    assert_eq!(ok("{{b64enc values.secret}}"), "czNjcjN0");
    assert_eq!(ok("{{b64enc values.replicas}}"), "Mg==");
    assert!(matches!(
        err("{{b64enc values.nothing}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert!(matches!(
        err("{{b64enc values.nope}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
}

#[test]
fn to_yaml_and_to_json_helpers() {
    assert_eq!(
        ok("{{toYaml values.resources}}"),
        "limits:\n  cpu: 500m\n  memory: 256Mi\nrequests:\n  cpu: 100m"
    );
    assert_eq!(ok("{{toYaml values.list}}"), "- a\n- b");
    assert_eq!(ok("{{toYaml values.replicas}}"), "2");
    assert_eq!(ok("{{toJson values.list}}"), "[\"a\",\"b\"]");
    assert_eq!(
        ok("{{toJson values.resources}}"),
        r#"{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m"}}"#
    );
    assert!(matches!(
        err("{{toYaml values.nope}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
    assert!(matches!(
        err("{{toJson values.nope}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
}

#[test]
fn indent_and_nindent_helpers() {
    assert_eq!(ok("{{indent 2 values.multi}}"), "  a\n\n  b\n");
    assert_eq!(ok("{{nindent 2 values.multi}}"), "\n  a\n\n  b\n");
    assert_eq!(ok("{{indent 0 values.multi}}"), "a\n\nb\n");
    assert_eq!(ok("{{indent \"3\" \"a\"}}"), "   a");
    let e = err("{{indent -1 \"a\"}}");
    assert!(
        matches!(&e, RenderError { kind: RenderErrorKind::Helper { helper, .. }, .. } if *helper == "indent"),
        "{e:?}"
    );
    assert!(matches!(
        err("{{indent \"x\" \"a\"}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert!(matches!(
        err("{{nindent 4}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
}

#[test]
fn to_yaml_with_nindent_produces_valid_nested_yaml() {
    let template = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      resources:{{nindent 8 (toYaml values.resources)}}\n      args:{{nindent 8 (toYaml values.list)}}\n";
    let out = Renderer::new(None).render(&tpl(template), &ctx()).unwrap();
    assert_eq!(out.len(), 1);
    let container = &out[0].object["spec"]["containers"][0];
    assert_eq!(container["resources"], ctx()["values"]["resources"]);
    assert_eq!(container["args"], json!(["a", "b"]));
}

#[test]
fn sha256_helper_is_stable() {
    assert_eq!(
        ok("{{sha256 \"abc\"}}"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let a = ok("{{sha256 values}}");
    assert_eq!(a.len(), 64);
    assert_eq!(a, ok("{{sha256 values}}"));
    // Same values inserted in another order hash the same.
    let mut reordered = ctx();
    let values = reordered["values"].as_object().unwrap().clone();
    let mut rev = serde_json::Map::new();
    for (k, v) in values.into_iter().rev() {
        rev.insert(k, v);
    }
    reordered["values"] = Value::Object(rev);
    let b = Renderer::new(None)
        .render_text(&tpl("{{sha256 values}}"), &reordered)
        .unwrap();
    assert_eq!(a, b);
    // A change changes it.
    let mut changed = ctx();
    changed["values"]["replicas"] = json!(3);
    let c = Renderer::new(None)
        .render_text(&tpl("{{sha256 values}}"), &changed)
        .unwrap();
    assert_ne!(a, c);
    assert!(matches!(
        err("{{sha256 values.nope}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
}

#[test]
fn string_helpers() {
    assert_eq!(ok("{{trunc 3 sandbox.name}}"), "fea");
    assert_eq!(ok("{{trunc -1 sandbox.name}}"), "x");
    assert_eq!(ok("{{trunc 63 sandbox.name}}"), "feature-x");
    assert!(matches!(
        err("{{trunc \"a\" sandbox.name}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert_eq!(ok("{{lower \"AbC\"}}"), "abc");
    assert_eq!(ok("{{upper sandbox.name}}"), "FEATURE-X");
    assert!(matches!(
        err("{{upper values.list}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert_eq!(ok("{{replace \"/\" \"-\" sandbox.branch}}"), "feature-x");
    assert!(matches!(
        err("{{replace \"/\" sandbox.branch}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert!(matches!(
        err("{{replace \"\" \"-\" sandbox.branch}}"),
        RenderError {
            kind: RenderErrorKind::Helper { .. },
            ..
        }
    ));
    assert_eq!(ok("{{trimSuffix \"-\" \"abc-\"}}"), "abc");
    assert_eq!(ok("{{trimSuffix \"-\" \"abc\"}}"), "abc");
}

#[test]
fn syntax_error_and_unknown_helper() {
    let e = err("a: 1\nb: {{#if x}}\n");
    assert!(
        matches!(&e, RenderError { template, kind: RenderErrorKind::Syntax { .. }, .. } if template == "templates/test.yaml"),
        "{e:?}"
    );
    assert!(e.source().is_some());
    let e = err("a: 1\nb: {{#each}}{{/if}}\n");
    assert!(
        matches!(
            e,
            RenderError {
                line: Some(2),
                kind: RenderErrorKind::Syntax { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("b: {{#each}}"));

    // No position from Handlebars for a bad parameter: located in the text.
    let e = err("a: 1\nb: {{quote \"x\ny\"}}\n");
    assert!(
        matches!(
            e,
            RenderError {
                line: Some(2),
                column: Some(12),
                kind: RenderErrorKind::Syntax { .. },
                ..
            }
        ),
        "{e:?}"
    );

    let e = err("{{#if (eq values.nope \"prod\")}}x{{/if}}");
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::Template { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("`eq`"), "{:?}", e.hint());

    let e = err("a: {{nosuchhelper values.replicas}}");
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::Template { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("nindent"));
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::create_dir_all(root.join("scripts/sub")).unwrap();
    std::fs::write(root.join("config/app.toml"), "[server]\nport = 8080\n").unwrap();
    std::fs::write(root.join("scripts/b.sh"), "echo b\n").unwrap();
    std::fs::write(root.join("scripts/a.sh"), "echo \"a\"\n").unwrap();
    std::fs::write(root.join("scripts/.hidden.sh"), "hidden\n").unwrap();
    std::fs::write(root.join("scripts/notes.txt"), "not a script").unwrap();
    std::fs::write(root.join("scripts/sub/c.sh"), "echo c\n").unwrap();
    std::fs::write(root.join("binary.bin"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(
        dir.path().parent().unwrap().join("outside-secret.txt"),
        "nope",
    )
    .ok();
    dir
}

fn in_repo(root: &Path, template: &str) -> Result<String, RenderError> {
    let tree = RepoTree::new(root, 1 << 20);
    Renderer::new(Some(tree)).render_text(&tpl(template), &ctx())
}

#[test]
fn file_helper() {
    let dir = repo();
    let root = dir.path();
    assert_eq!(
        in_repo(root, "{{file \"config/app.toml\"}}").unwrap(),
        "[server]\nport = 8080\n"
    );
    assert_eq!(
        in_repo(root, "{{file \"./config/app.toml\"}}").unwrap(),
        "[server]\nport = 8080\n"
    );

    let e = in_repo(root, "x\n{{file \"config/missing.toml\"}}").unwrap_err();
    match &e {
        RenderError {
            line,
            kind: RenderErrorKind::File { path, problem, .. },
            ..
        } => {
            assert_eq!(*line, Some(2));
            assert_eq!(path, "config/missing.toml");
            assert_eq!(*problem, FileProblem::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("`config/missing.toml`"), "{e}");
    assert!(e.source().is_some());

    for escape in [
        "../outside-secret.txt",
        "config/../../outside-secret.txt",
        "/etc/passwd",
    ] {
        let e = in_repo(root, &format!("{{{{file \"{escape}\"}}}}")).unwrap_err();
        assert!(
            matches!(&e, RenderError { kind: RenderErrorKind::File { problem: FileProblem::OutsideRepo, path, .. }, .. } if path == escape),
            "{escape}: {e:?}"
        );
        assert!(e.hint().unwrap().contains("without `..`"));
    }

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        let e = in_repo(root, "{{file \"etc-link/hostname\"}}").unwrap_err();
        assert!(
            matches!(
                &e,
                RenderError {
                    kind: RenderErrorKind::File {
                        problem: FileProblem::OutsideRepo | FileProblem::NotFound,
                        ..
                    },
                    ..
                }
            ),
            "{e:?}"
        );
    }

    let e = in_repo(root, "{{file \"config\"}}").unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::NotAFile,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    let e = in_repo(root, "{{file \"binary.bin\"}}").unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::NotUtf8,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );

    let e = err("{{file \"config/app.toml\"}}");
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::NoRepoRoot,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        err("{{file values.nope}}"),
        RenderError {
            kind: RenderErrorKind::MissingValue { .. },
            ..
        }
    ));
}

#[test]
fn files_helper() {
    let dir = repo();
    let root = dir.path();
    let out = in_repo(
        root,
        "{{#each (files \"scripts/*.sh\")}}{{this.path}}|{{this.name}}|{{quote this.content}};{{/each}}",
    )
    .unwrap();
    assert_eq!(
        out,
        r#"scripts/a.sh|a.sh|"echo \"a\"\n";scripts/b.sh|b.sh|"echo b\n";"#
    );
    let out = in_repo(
        root,
        "{{#each (files \"scripts/**/*.sh\")}}{{this.path}} {{/each}}",
    )
    .unwrap();
    assert_eq!(out, "scripts/a.sh scripts/b.sh scripts/sub/c.sh ");
    let out = in_repo(
        root,
        "{{#each (files \"scripts/.*.sh\")}}{{this.path}}{{/each}}",
    )
    .unwrap();
    assert_eq!(out, "scripts/.hidden.sh");
    assert_eq!(in_repo(root, "{{len (files \"nothing/*\")}}").unwrap(), "0");

    let e = in_repo(root, "{{files \"../*\"}}").unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::OutsideRepo,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    let e = in_repo(root, "{{files \"/etc/*\"}}").unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::OutsideRepo,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    let e = in_repo(root, "{{files \"scripts/[\"}}").unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::InvalidGlob,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    let e = err("{{files \"*\"}}");
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::File {
                    problem: FileProblem::NoRepoRoot,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rendered_output_that_expands_too_far_is_refused() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{}",
        crate::yaml::bombs::quadratic_alias(2_000)
    );
    let e = parse_manifests("templates/bomb.yaml", &text).unwrap_err();
    assert!(
        matches!(e.kind, RenderErrorKind::TooLarge { document: 2, .. }),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.starts_with("templates/bomb.yaml: rendered document 2 (rendered line ")
            && message.contains("): expands to more than 1000000 YAML nodes"),
        "{message}"
    );
    assert!(e.hint().unwrap().contains("alias"));
}

#[test]
fn multi_document_parsing() {
    let r = Renderer::new(None);
    let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n...\n---\n";
    let m = r.render(&tpl(text), &ctx()).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].kind(), m[0].name(), m[0].object["apiVersion"].as_str()),
        ("ConfigMap", "a", Some("v1"))
    );
    assert_eq!((m[1].kind(), m[1].name()), ("Secret", "b"));
    assert_eq!(m[1].template, "templates/test.yaml");
    assert!(r.render(&tpl(""), &ctx()).unwrap().is_empty());
    assert!(r.render(&tpl("\n---\n---\n"), &ctx()).unwrap().is_empty());

    // A document without kind: index among non-empty documents and its rendered line.
    let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\n# hi\napiVersion: v1\nmetadata:\n  name: b\n";
    let e = r.render(&tpl(text), &ctx()).unwrap_err();
    match &e {
        RenderError {
            line,
            kind: RenderErrorKind::InvalidObject { document, problem },
            ..
        } => {
            assert_eq!(*document, 2);
            assert_eq!(*line, Some(10));
            assert!(problem.contains("no `kind`"), "{problem}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("document 2"), "{e}");

    let e = r.render(&tpl("- a\n- b\n"), &ctx()).unwrap_err();
    assert!(
        matches!(
            e,
            RenderError {
                kind: RenderErrorKind::InvalidObject { document: 1, .. },
                ..
            }
        ),
        "{e:?}"
    );
    let e = r
        .render(
            &tpl("apiVersion: v1\nkind: X\nmetadata:\n  name: 5\n"),
            &ctx(),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("`metadata.name` is not a string"),
        "{e}"
    );
}

#[test]
fn invalid_yaml_reports_rendered_line() {
    let r = Renderer::new(None);
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  key: a: b\n";
    let e = r.render(&tpl(text), &ctx()).unwrap_err();
    match &e {
        RenderError {
            line,
            kind:
                RenderErrorKind::Yaml {
                    document,
                    rendered_line,
                    ..
                },
            ..
        } => {
            assert_eq!(*document, 2);
            assert_eq!(*line, Some(11));
            assert_eq!(rendered_line.as_deref(), Some("  key: a: b"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        e.hint().unwrap().contains("rendered line 11:   key: a: b"),
        "{:?}",
        e.hint()
    );
    // render_text does not parse.
    assert!(r.render_text(&tpl(text), &ctx()).is_ok());
}

#[test]
fn realistic_template_from_fixture() {
    let dir = repo();
    let r = Renderer::new(Some(RepoTree::new(dir.path(), 1 << 20)));
    let source = TemplateSource {
        name: "templates/api.yaml".to_owned(),
        text: include_str!("../../../tests/fixtures/render/api.yaml").to_owned(),
    };
    let m = r
        .render(&source, &ctx())
        .unwrap_or_else(|e| panic!("{e}: {:?} hint {:?}", e.source(), e.hint()));
    let kinds: Vec<_> = m.iter().map(|m| (m.kind(), m.name())).collect();
    assert_eq!(
        kinds,
        [
            ("ConfigMap", "api-config"),
            ("Deployment", "api"),
            ("Service", "api")
        ]
    );
    let cm = &m[0].object;
    assert_eq!(cm["data"]["app.toml"], "[server]\nport = 8080\n");
    assert_eq!(cm["data"]["a.sh"], "echo \"a\"\n");
    assert_eq!(cm["data"]["b.sh"], "echo b\n");
    let deploy = &m[1].object;
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["metadata"]["labels"]["sandbox"], "feature-x");
    let pod = &deploy["spec"]["template"];
    let checksum = pod["metadata"]["annotations"]["checksum/config"]
        .as_str()
        .unwrap();
    assert_eq!(checksum.len(), 64);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.com/api:0123456");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["env"][0]["value"], "postgres://db:5432/app");
    assert_eq!(c["env"][2]["value"], "INFO");
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(m[2].object["spec"]["ports"][0]["port"], 8080);

    // Without resources the block disappears; without the database url it fails.
    let mut c2 = ctx();
    c2["values"].as_object_mut().unwrap().remove("resources");
    let m = r.render(&source, &c2).unwrap();
    assert!(m[1].object["spec"]["template"]["spec"]["containers"][0]
        .get("resources")
        .is_none());
    c2["values"]["database"]
        .as_object_mut()
        .unwrap()
        .remove("url");
    let e = r.render(&source, &c2).unwrap_err();
    assert!(
        matches!(&e, RenderError { template, kind: RenderErrorKind::Required { .. }, .. } if template == "templates/api.yaml"),
        "{e:?}"
    );
    assert!(e.to_string().contains("the api needs a database"), "{e}");
}
