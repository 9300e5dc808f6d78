//! One function per command: resolve the settings, run the pipeline (or part of it), print the
//! result to stdout. Progress and errors go to stderr.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::Api;

use crate::cli::{Cli, Command, Output};
use crate::error::Hint;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::pipeline::config::{self, Config};
use crate::pipeline::handover::UpReport;
use crate::pipeline::plan::ANNOTATION_PREFIX;
use crate::pipeline::up::{self, Settings, UpOptions};
use crate::progress::Reporter;
use crate::{diff, inspect, lock, reap};

pub async fn run(cli: Cli) -> Result<()> {
    let cluster = ClusterOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    let reporter = Reporter::new(cli.quiet);
    match cli.command {
        Command::Up(args) => {
            let settings = settings(&cli.config, &args.branch.branch, args.sets, args.ttl)?;
            let options = UpOptions {
                on_failure: args.on_failure,
                wait_for_lock: !args.no_wait,
            };
            // Ctrl-C drops the pipeline where it stands: the lock is given back on the way out,
            // and the inventory written before each change lets the next `up` or `down` finish.
            let report = tokio::select! {
                report = up::up(&settings, &cluster, options, &reporter) => report?,
                _ = tokio::signal::ctrl_c() => {
                    reporter.abandon();
                    return Err(Interrupted(settings.namespace.clone()).into());
                }
            };
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
            let cluster = connect(&cluster).await.context("cannot delete sandboxes")?;
            if args.all_expired {
                let rows = reap::reap(&cluster, false).await?;
                print_reaped(&rows, Output::Text)?;
            } else {
                let branch = args
                    .branch
                    .as_deref()
                    .expect("clap requires --branch without --all-expired");
                let namespace = namespace_of(&cli.config, branch)?;
                down(&cluster, &namespace, !args.no_wait, &reporter).await?;
            }
        }
        Command::Render(args) => {
            let settings = settings(&cli.config, &args.branch.branch, args.sets, None)?;
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
            let settings = settings(&cli.config, &args.branch.branch, args.sets, None)?;
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
        Command::List(args) => {
            let cluster = connect(&cluster).await.context("cannot list sandboxes")?;
            let rows = inspect::list(&cluster).await?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => inspect::print_list(&rows),
            }
        }
        Command::Status(args) => {
            let namespace = namespace_of(&cli.config, &args.branch.branch)?;
            let cluster = connect(&cluster).await.context("cannot read the sandbox")?;
            ensure_ours(&cluster, &namespace).await?;
            let rows = inspect::status(&cluster, &namespace).await?;
            match args.output.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => inspect::print_status(&rows),
            }
        }
        Command::Logs(args) => {
            let config = load_config(&cli.config)?;
            if let Some(s) = &args.service {
                ensure_service(&config, s)?;
            }
            let namespace =
                crate::pipeline::plan::namespace_for(&config.namespace_prefix, &args.branch.branch);
            let cluster = connect(&cluster).await.context("cannot read the logs")?;
            ensure_ours(&cluster, &namespace).await?;
            tokio::select! {
                r = inspect::logs(&cluster, &namespace, args.service.as_deref(), args.follow, args.since, args.tail) => r?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Command::Diff(args) => {
            let settings = settings(&cli.config, &args.branch.branch, args.sets, None)?;
            let (cluster, prepared) =
                tokio::join!(connect(&cluster), up::prepare(&settings, false, &reporter));
            let prepared = prepared?;
            let cluster = cluster.context("cannot compare with the cluster")?;
            let secrets: Vec<String> = prepared
                .values
                .values()
                .flat_map(|v| v.secret_strings())
                .collect();
            let changes = diff::diff(&cluster, &prepared, &secrets).await?;
            diff::print_diff(
                &prepared.plan.namespace,
                &changes,
                prepared.plan.objects().count(),
            );
        }
        Command::Validate(args) => {
            let settings = settings(&cli.config, &args.branch.branch, args.sets, None)?;
            let prepared = up::prepare(&settings, false, &reporter).await?;
            let objects = prepared.plan.objects().count();
            println!(
                "{}: {} services, {objects} objects render",
                settings.config.path.display(),
                settings.config.services.len()
            );
            match tokio::time::timeout(Duration::from_secs(10), connect(&cluster)).await {
                Ok(Ok(cluster)) => {
                    let n = diff::validate_on_server(&cluster, &prepared).await?;
                    println!(
                        "server-side dry run at {}: {n} objects accepted",
                        cluster.server
                    );
                }
                _ => reporter.info("no cluster reachable: the server-side dry run was skipped"),
            }
        }
        Command::Extend(args) => {
            let namespace = namespace_of(&cli.config, &args.branch.branch)?;
            let cluster = connect(&cluster)
                .await
                .context("cannot extend the sandbox")?;
            ensure_ours(&cluster, &namespace).await?;
            let ttl = jiff::SignedDuration::try_from(args.ttl).context("the TTL is too long")?;
            let expires = jiff::Timestamp::now()
                .checked_add(ttl)
                .context("the TTL is too long")?;
            crate::pipeline::inventory::annotate(
                &cluster,
                &namespace,
                std::collections::BTreeMap::from([(
                    format!("{ANNOTATION_PREFIX}expires-at"),
                    expires.to_string(),
                )]),
            )
            .await?;
            println!("{namespace} now expires at {expires}");
        }
        Command::Reap(args) => {
            let cluster = connect(&cluster).await.context("cannot reap sandboxes")?;
            let rows = reap::reap(&cluster, args.dry_run).await?;
            print_reaped(&rows, args.output.output)?;
        }
        Command::ReaperManifests(args) => {
            let api_version = match args.cronjob_api_version {
                Some(v) => v,
                None => match tokio::time::timeout(Duration::from_secs(5), connect(&cluster)).await
                {
                    Ok(Ok(cluster)) if cluster.resolve("batch/v1", "CronJob").is_none() => {
                        "batch/v1beta1".to_owned()
                    }
                    _ => "batch/v1".to_owned(),
                },
            };
            print!(
                "{}",
                reap::reaper_manifests(&args.image, &args.schedule, &args.namespace, &api_version)
            );
        }
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "sandbox", &mut std::io::stdout());
        }
        Command::Serve(args) => crate::serve::run(args, &cli.config, cluster).await?,
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

/// `sandbox down`: take the sandbox's lock (so it never pulls the floor from under an `up`),
/// then delete it and wait until it is gone.
pub async fn down(
    cluster: &Cluster,
    namespace: &str,
    wait: bool,
    reporter: &Reporter,
) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let exists = api
        .get_opt(namespace)
        .await
        .context("could not read the namespace")?;
    let live = exists.filter(|ns| ns.metadata.deletion_timestamp.is_none());
    let _lock = match &live {
        Some(ns) if reap::is_ours(ns) => Some(
            lock::acquire(
                cluster,
                namespace,
                &lock::holder_identity("down"),
                wait,
                reporter,
            )
            .await?,
        ),
        _ => None,
    };
    delete_sandbox(cluster, namespace, reporter).await
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
    let ours = crate::pipeline::plan::is_managed(&ns.metadata);
    if !ours {
        return Err(crate::pipeline::apply::ApplyError::NotOurs(namespace.into()).into());
    }
    if ns.metadata.deletion_timestamp.is_none() {
        api.delete(namespace, &DeleteParams::background())
            .await
            .context("could not delete the namespace")?;
    }
    reporter.info(&format!("deleting `{namespace}`…"));
    crate::pipeline::apply::wait_namespace_gone(cluster, namespace, Duration::from_secs(180))
        .await?;
    reporter.info(&format!("sandbox `{namespace}` is gone"));
    Ok(())
}

/// `up` stopped by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: sandbox `{0}` is partly updated")]
pub struct Interrupted(pub String);

impl Hint for Interrupted {
    fn hint(&self) -> Option<String> {
        Some("run `sandbox up` again to finish it, or `sandbox down` to remove it".into())
    }
}

/// The settings of a command that runs the pipeline (or its offline part) for one branch.
fn settings(
    config: &std::path::Path,
    branch: &str,
    sets: Vec<crate::pipeline::values::SetValue>,
    ttl: Option<Duration>,
) -> Result<Settings> {
    Settings::new(load_config(config)?, branch, sets, ttl)
}

fn namespace_of(config: &std::path::Path, branch: &str) -> Result<String> {
    let config = load_config(config)?;
    Ok(crate::pipeline::plan::namespace_for(
        &config.namespace_prefix,
        branch,
    ))
}

/// Refuse to look into a namespace the tool does not manage (or that does not exist).
async fn ensure_ours(cluster: &Cluster, namespace: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    match api
        .get_opt(namespace)
        .await
        .context("could not read the namespace")?
    {
        None => {
            anyhow::bail!("there is no sandbox `{namespace}`; `sandbox list` shows the sandboxes")
        }
        Some(ns) if !reap::is_ours(&ns) => {
            Err(crate::pipeline::apply::ApplyError::NotOurs(namespace.into()).into())
        }
        Some(_) => Ok(()),
    }
}

fn print_reaped(rows: &[reap::Reaped], output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Text => {
            if rows.is_empty() {
                println!("no expired sandboxes");
            }
            for r in rows {
                println!(
                    "{}: {} (branch {}, owner {}, expired at {})",
                    r.action, r.namespace, r.branch, r.owner, r.expired_at
                );
            }
        }
    }
    Ok(())
}
