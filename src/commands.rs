//! One function per command: resolve the settings, run the pipeline (or part of it), print the
//! result to stdout. Progress and errors go to stderr.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams};
use kube::Api;

use crate::cli::{Cli, Command, Output};
use crate::config::{self, Config};
use crate::handover::UpReport;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::plan::{ANNOTATION_PREFIX, MANAGED_BY, MANAGED_BY_VALUE};
use crate::progress::Reporter;
use crate::up::{self, Settings};

pub async fn run(cli: Cli) -> Result<()> {
    let cluster = ClusterOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    let reporter = Reporter::new(cli.quiet);
    match cli.command {
        Command::Up(args) => {
            let settings = Settings::new(
                load_config(&cli.config)?,
                &args.branch.branch,
                args.sets,
                args.ttl,
            )?;
            let report = up::up(&settings, &cluster, args.on_failure, &reporter).await?;
            if args.timings {
                print_timings(&report, &reporter);
            }
            match args.output.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => {
                    reporter.info(&format!(
                        "sandbox `{}` is ready in {:.1}s",
                        report.namespace, report.timings.total
                    ));
                    println!("{}", report.url);
                }
            }
        }
        Command::Down(args) => {
            let config = load_config(&cli.config)?;
            let namespace = crate::plan::namespace_for(&config.namespace_prefix, &args.branch);
            down(&cluster, &namespace, &reporter).await?;
        }
        Command::Render(args) => {
            let settings = Settings::new(
                load_config(&cli.config)?,
                &args.branch.branch,
                args.sets,
                None,
            )?;
            if let Some(s) = &args.service {
                ensure_service(&settings.config, s)?;
            }
            let prepared = up::prepare(&settings, !args.reveal, &reporter).await?;
            let wanted = |service: &str| args.service.as_deref().is_none_or(|s| s == service);
            let steps: Vec<_> = prepared
                .plan
                .steps
                .iter()
                .filter(|s| wanted(&s.service))
                .collect();
            let smoke: Vec<_> = prepared
                .plan
                .smoke
                .iter()
                .filter(|(s, _)| wanted(s))
                .collect();
            match args.output.output {
                Output::Json => {
                    let plan = serde_json::json!({
                        "namespace": prepared.plan.namespace,
                        "steps": steps.iter().map(|s| serde_json::json!({
                            "id": s.id,
                            "service": s.service,
                            "role": s.role.as_str(),
                            "after": s.after.iter().map(|&i| prepared.plan.steps[i].id.clone()).collect::<Vec<_>>(),
                            "objects": s.objects,
                        })).collect::<Vec<_>>(),
                        "smoke": smoke.iter().map(|(_, o)| o).collect::<Vec<_>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                }
                Output::Text => {
                    let objects = steps
                        .iter()
                        .flat_map(|s| s.objects.iter())
                        .chain(smoke.iter().map(|(_, o)| o));
                    for object in objects {
                        print!("---\n{}", serde_yaml_ng::to_string(object)?);
                    }
                }
            }
        }
        Command::Values(args) => {
            let settings = Settings::new(
                load_config(&cli.config)?,
                &args.branch.branch,
                args.sets,
                None,
            )?;
            ensure_service(&settings.config, &args.service)?;
            let prepared = up::prepare(&settings, !args.reveal, &reporter).await?;
            let values = &prepared.values[&args.service];
            let shown = if args.reveal {
                values.reveal().clone()
            } else {
                values.redacted()
            };
            print!("{}", serde_yaml_ng::to_string(&shown)?);
        }
        Command::List(args) => list(&cluster, args.output).await?,
    }
    Ok(())
}

fn load_config(path: &std::path::Path) -> Result<Config> {
    Ok(config::load(path, &|var| std::env::var(var).ok())?)
}

fn ensure_service(config: &Config, name: &str) -> Result<()> {
    if config.service(name).is_none() {
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        let hint = config::suggest(name, &names)
            .unwrap_or_else(|| format!("services: {}", names.join(", ")));
        anyhow::bail!(
            "service `{name}` is not in {} ({hint})",
            config.path.display()
        );
    }
    Ok(())
}

fn print_timings(report: &UpReport, reporter: &Reporter) {
    let t = &report.timings;
    let mut out = format!(
        "timings: total {:.2}s = prepare {:.2}s (checkout {:.2}s, values+render+plan {:.3}s) + deploy {:.2}s + smoke {:.2}s\n",
        t.total, t.prepare, t.checkout, t.values_render_plan, t.deploy, t.smoke
    );
    for (id, start, ready) in &t.steps {
        out.push_str(&format!(
            "  {id:<20} {start:>6.2}s → {ready:>6.2}s  ({:.2}s)\n",
            ready - start
        ));
    }
    out.push_str(&format!(
        "  critical path {:.2}s of deploy {:.2}s ({:.0}%)",
        t.critical_path,
        t.deploy,
        if t.deploy > 0.0 {
            100.0 * t.critical_path / t.deploy
        } else {
            0.0
        }
    ));
    reporter.info(&out);
}

/// `sandbox down`: connect, then delete the sandbox.
pub async fn down(options: &ClusterOptions, namespace: &str, reporter: &Reporter) -> Result<()> {
    let cluster = connect(options)
        .await
        .context("cannot delete the sandbox")?;
    delete_sandbox(&cluster, namespace, reporter).await
}

/// Delete a sandbox's namespace — only if the tool made it — and wait until it is gone.
pub async fn delete_sandbox(cluster: &Cluster, namespace: &str, reporter: &Reporter) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let Some(ns) = api
        .get_opt(namespace)
        .await
        .context("could not read the namespace")?
    else {
        reporter.info(&format!(
            "sandbox `{namespace}` does not exist; nothing to do"
        ));
        return Ok(());
    };
    let ours = ns
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE);
    if !ours {
        return Err(crate::apply::ApplyError::NotOurs(namespace.into()).into());
    }
    if ns.metadata.deletion_timestamp.is_none() {
        api.delete(namespace, &DeleteParams::background())
            .await
            .context("could not delete the namespace")?;
    }
    reporter.info(&format!("deleting `{namespace}`…"));
    crate::apply::wait_namespace_gone(cluster, namespace, Duration::from_secs(180)).await?;
    reporter.info(&format!("sandbox `{namespace}` is gone"));
    Ok(())
}

async fn list(options: &ClusterOptions, output: Output) -> Result<()> {
    let cluster = connect(options).await.context("cannot list sandboxes")?;
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_BY_VALUE}")))
        .await
        .context("could not list namespaces")?;
    let rows: Vec<serde_json::Value> = list
        .items
        .iter()
        .map(|ns| {
            let a = ns.metadata.annotations.clone().unwrap_or_default();
            let get = |k: &str| {
                a.get(&format!("{ANNOTATION_PREFIX}{k}"))
                    .cloned()
                    .unwrap_or_default()
            };
            serde_json::json!({
                "namespace": ns.metadata.name,
                "branch": get("branch"),
                "owner": get("owner"),
                "created_at": get("created-at"),
                "expires_at": get("expires-at"),
                "status": ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
            })
        })
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Text => {
            println!(
                "{:<32} {:<24} {:<12} {:<26} {:<10}",
                "NAMESPACE", "BRANCH", "OWNER", "EXPIRES", "STATUS"
            );
            for r in rows {
                println!(
                    "{:<32} {:<24} {:<12} {:<26} {:<10}",
                    r["namespace"].as_str().unwrap_or(""),
                    r["branch"].as_str().unwrap_or(""),
                    r["owner"].as_str().unwrap_or(""),
                    r["expires_at"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
