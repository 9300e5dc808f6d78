use super::*;

fn manifest(kind: &str, name: &str) -> Manifest {
    Manifest {
        template: format!("templates/{name}.yaml"),
        object: serde_json::json!({
            "apiVersion": if kind == "Job" { "batch/v1" } else { "apps/v1" },
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"template": {"spec": {}}},
        }),
    }
}

fn service(name: &str, deps: &[&str], preflight: bool) -> RenderedService {
    RenderedService {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        preflight: if preflight {
            vec![vec![manifest("Job", &format!("{name}-migrate"))]]
        } else {
            vec![]
        },
        objects: vec![manifest("Deployment", name)],
        post_install: vec![],
        smoke: vec![],
        allow: BTreeSet::new(),
        cluster_roles: BTreeSet::new(),
    }
}

#[test]
fn steps_follow_dependencies_and_preflight_sits_between() {
    let p = plan(
        "sb-x",
        vec![
            service("api", &["db"], true),
            service("db", &[], false),
            service("web", &["api"], false),
        ],
    )
    .unwrap();
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["db", "api/preflight", "api", "web"]);
    assert_eq!(p.steps[1].after, vec![0]);
    assert_eq!(p.steps[2].after, vec![1]);
    assert_eq!(p.steps[3].after, vec![2]);
}

#[test]
fn preflight_phases_and_post_install_chain_and_dependents_wait_for_the_end() {
    let mut api = service("api", &[], true);
    api.preflight.push(vec![]); // an empty phase makes no step
    api.preflight.push(vec![manifest("Job", "api-seed")]);
    api.post_install.push(manifest("Job", "api-warm"));
    let p = plan("sb-x", vec![api, service("web", &["api"], false)]).unwrap();
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "api/preflight",
            "api/preflight-2",
            "api",
            "api/post-install",
            "web"
        ]
    );
    let after: Vec<Vec<usize>> = p.steps.iter().map(|s| s.after.clone()).collect();
    assert_eq!(after, [vec![], vec![0], vec![1], vec![2], vec![3]]);
    assert_eq!(p.steps[3].role, Role::PostInstall);
    assert_eq!(
        p.steps[3].objects[0]["metadata"]["labels"][ROLE_LABEL],
        "post-install"
    );
}

#[test]
fn objects_and_pod_templates_are_stamped() {
    let p = plan("sb-x", vec![service("db", &[], false)]).unwrap();
    let o = &p.steps[0].objects[0];
    assert_eq!(o["metadata"]["namespace"], "sb-x");
    assert_eq!(o["metadata"]["labels"][MANAGED_BY], "sandbox");
    assert_eq!(
        o["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL],
        "db"
    );
}

/// Service `api` with one more object, of `kind` and `name`, from templates/extra.yaml.
fn api_with(kind: &str, name: &str) -> RenderedService {
    let mut api = service("api", &[], false);
    api.objects.push(Manifest {
        template: "templates/extra.yaml".into(),
        object: serde_json::json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}),
    });
    api
}

#[test]
fn an_object_named_as_one_of_the_tools_own_is_refused_saying_where_and_what_to_do() {
    let err = plan("sb-x", vec![api_with("ResourceQuota", "sandbox-quota")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "templates/extra.yaml: ResourceQuota `sandbox-quota` of service `api` has a name reserved by sandbox for the sandbox's quota (`limits` in sandbox.yaml)"
    );
    let hint = err.hint().unwrap();
    assert!(
        hint.starts_with("rename it in the template, e.g. `api-sandbox-quota`"),
        "{hint}"
    );
    assert!(!hint.contains("NetworkPolicy"), "{hint}");
    let err = plan("sb-x", vec![api_with("NetworkPolicy", "sandbox-egress")]).unwrap_err();
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("NetworkPolicy `sandbox-isolation`, NetworkPolicy `sandbox-egress`"),
        "{hint}"
    );
    for (kind, name, _) in RESERVED {
        let err = plan("sb-x", vec![api_with(kind, name)]).unwrap_err();
        assert!(
            matches!(err, PlanError::Reserved { .. }),
            "{kind} `{name}`: {err}"
        );
    }
    // In a preflight phase as well as in the service's objects.
    let mut api = service("api", &[], true);
    api.preflight[0].push(api_with("Secret", "sandbox-last-good").objects.remove(1));
    let err = plan("sb-x", vec![api]).unwrap_err();
    assert!(matches!(err, PlanError::Reserved { .. }), "{err}");
}

#[test]
fn the_same_name_of_another_kind_or_another_name_is_the_templates_to_use() {
    for (kind, name) in [
        ("ConfigMap", "sandbox-quota"),
        ("ResourceQuota", "api-quota"),
        ("Lease", "sandbox-lock-2"),
        ("Secret", "sandbox-access"),
    ] {
        assert!(
            plan("sb-x", vec![api_with(kind, name)]).is_ok(),
            "{kind} `{name}`"
        );
    }
}

#[test]
fn the_namespace_objects_come_first_and_every_root_waits_for_them() {
    let services = vec![
        service("db", &[], true),
        service("api", &["db"], false),
        service("cache", &[], false),
    ];
    let p = plan("sb-x", services).unwrap();
    let before: Vec<(String, Vec<usize>)> = p
        .steps
        .iter()
        .map(|s| (s.id.clone(), s.after.clone()))
        .collect();
    let p = p.with_namespace_objects(vec![manifest("ResourceQuota", "sandbox-quota")]);
    assert_eq!(p.steps[0].id, NAMESPACE_STEP);
    assert_eq!(
        p.steps[0].objects[0]["metadata"]["labels"][ROLE_LABEL],
        "namespace"
    );
    for (i, (id, after)) in before.iter().enumerate() {
        let step = &p.steps[i + 1];
        assert_eq!(&step.id, id);
        let want: Vec<usize> = match after.is_empty() {
            true => vec![0],
            false => after.iter().map(|a| a + 1).collect(),
        };
        assert_eq!(step.after, want, "{id}");
    }
    let unchanged = plan("sb-x", vec![service("db", &[], false)]).unwrap();
    assert_eq!(
        unchanged
            .clone()
            .with_namespace_objects(Vec::new())
            .steps
            .len(),
        unchanged.steps.len()
    );
}

#[test]
fn cluster_scoped_and_duplicates_are_refused() {
    let mut s = service("db", &[], false);
    s.objects.push(manifest("Namespace", "evil"));
    assert!(matches!(
        plan("sb-x", vec![s]),
        Err(PlanError::ClusterScoped { .. })
    ));
    let mut s = service("db", &[], false);
    s.objects.push(manifest("Deployment", "db"));
    assert!(matches!(
        plan("sb-x", vec![s]),
        Err(PlanError::Duplicate { .. })
    ));
    let mut s = service("db", &[], false);
    s.smoke.push(manifest("Pod", "test-page"));
    assert!(
        plan("sb-x", vec![s]).is_ok(),
        "a test Pod may be a smoke test"
    );
    let mut s = service("db", &[], false);
    s.smoke.push(manifest("Deployment", "smoke"));
    assert!(matches!(
        plan("sb-x", vec![s]),
        Err(PlanError::NotAJob { .. })
    ));
}

#[test]
fn host_rights_are_refused_in_every_step_unless_allowed() {
    let mut privileged = manifest("Job", "db-migrate");
    privileged.object["spec"] = serde_json::json!({"template": {"spec": {
        "containers": [{"name": "m", "securityContext": {"privileged": true}}]}}});
    let places: [fn(&mut RenderedService, Manifest); 4] = [
        |s, m| s.preflight = vec![vec![m]],
        |s, m| s.objects = vec![m],
        |s, m| s.post_install = vec![m],
        |s, m| s.smoke = vec![m],
    ];
    for place in places {
        let mut s = service("db", &[], false);
        place(&mut s, privileged.clone());
        let e = plan("sb-x", vec![s.clone()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "templates/db-migrate.yaml: Job `db-migrate` of service `db` sets `spec.template.spec.containers[0].securityContext.privileged` (true), which sandbox.yaml does not allow"
        );
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("add `allow: [privileged]` under `services.db`"),
            "{hint}"
        );
        s.allow.insert(Privilege::Privileged);
        assert!(plan("sb-x", vec![s]).is_ok());
    }
}

/// Service `db` whose migration Job has `procMount: Unmasked` (what Pod Security's baseline
/// refuses and sandbox.yaml can allow as `proc_mount`).
fn unmasked_proc(allowed: bool) -> RenderedService {
    let mut job = manifest("Job", "db-migrate");
    job.object["spec"] = serde_json::json!({"template": {"spec": {"containers": [
        {"name": "m", "securityContext": {"procMount": "Unmasked", "runAsUser": 0}}]}}});
    let mut s = service("db", &[], false);
    s.preflight = vec![vec![job]];
    if allowed {
        s.allow.insert(Privilege::ProcMount);
    }
    s
}

#[test]
fn pods_the_pod_security_level_refuses_are_refused_naming_each_field_and_the_level() {
    let e = check_pod_security(&[unmasked_proc(true)], PodSecurity::Baseline).unwrap_err();
    assert_eq!(
        e.to_string(),
        "templates/db-migrate.yaml: Job `db-migrate` of service `db` is refused by Pod Security `baseline` (`pod_security` in sandbox.yaml):\n  `spec.template.spec.containers[0].securityContext.procMount` is Unmasked: only the Default procMount is allowed"
    );
    let hint = e.hint().unwrap();
    assert!(
        hint.contains("set `pod_security: privileged` in sandbox.yaml"),
        "{hint}"
    );
    assert!(check_pod_security(&[unmasked_proc(true)], PodSecurity::Privileged).is_ok());

    // Restricted's own rules give way at baseline; every field of the object is named.
    let mut plain = service("db", &[], false);
    plain.objects[0].object["spec"] = serde_json::json!({"template": {"spec": {
        "containers": [{"name": "db"}]}}});
    let e = check_pod_security(&[plain.clone()], PodSecurity::Restricted).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("templates/db.yaml: Deployment `db` of service `db` is refused by Pod Security `restricted`"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("\n  `spec.template.spec.containers[0].securityContext.runAsNonRoot` is unset: restricted needs it true"), "{text}");
    assert!(e.hint().unwrap().contains("set `pod_security: baseline`"));
    assert!(check_pod_security(&[plain], PodSecurity::Baseline).is_ok());
}

#[test]
fn a_right_sandbox_yaml_does_not_allow_is_named_before_the_level() {
    let e = check_pod_security(&[unmasked_proc(false)], PodSecurity::Baseline).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::NotAllowed {
                privilege: Privilege::ProcMount,
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .hint()
        .unwrap()
        .contains("add `allow: [proc_mount]` under `services.db`"));
    // At privileged the allow-list still holds.
    assert!(plan("sb-x", vec![unmasked_proc(false)]).is_err());
    assert!(plan("sb-x", vec![unmasked_proc(true)]).is_ok());
}

#[test]
fn a_volume_type_is_allowed_by_name_and_an_unknown_one_never() {
    let with_volume = |kind: &str| {
        let mut s = service("db", &[], false);
        s.objects[0].object["spec"] = serde_json::json!({"template": {"spec": {
            "containers": [{"name": "db"}],
            "volumes": [{"name": "v", kind: {"server": "nfs.example.com", "path": "/"}}]}}});
        s
    };
    let e = plan("sb-x", vec![with_volume("nfs")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"templates/db.yaml: Deployment `db` of service `db` sets `spec.template.spec.volumes[0].nfs` ({"server":"nfs.example.com","path":"/"}), which sandbox.yaml does not allow"#
    );
    assert!(e
        .hint()
        .unwrap()
        .contains("add `allow: [volume:nfs]` under `services.db`"));
    let mut allowed = with_volume("nfs");
    let nfs = crate::pipeline::config::VolumeType::of_field("nfs").unwrap();
    allowed.allow.insert(Privilege::Volume(nfs));
    assert!(plan("sb-x", vec![allowed]).is_ok());
    let e = plan("sb-x", vec![with_volume("nfz")]).unwrap_err();
    let hint = e.hint().unwrap();
    assert!(
        hint.contains("no volume type of Kubernetes") && !hint.contains("allow:"),
        "{hint}"
    );
}
