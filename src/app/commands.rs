//! One function per command.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{print, App};
use crate::cli::{
    CompletionsArgs, DiffArgs, DownArgs, ExtendArgs, ImagesArgs, LogsArgs, ManArgs, ObjectsOutput,
    Output, PruneArgs, ReapArgs, ReaperArgs, RenderArgs, ServeArgs, SleepArgs, StatusArgs,
    TableOutputArg, UpArgs, ValidateArgs, ValuesArgs, WakeArgs,
};
use crate::kube::connect;
use crate::pipeline::apply;
use crate::pipeline::config::Config;
use crate::pipeline::images::Mode;
use crate::pipeline::settings::unknown_service;
use crate::pipeline::sleep::Outcome;
use crate::pipeline::{self, prepare, Interrupted, Secrets, UpOptions};
use crate::record::{self, Update};
use crate::{diff, inspect, reap, serve};

pub(super) async fn up(app: &App, args: UpArgs) -> Result<()> {
    let mut settings = app.settings(&args.branch.branch, args.sets.0, args.ttl)?;
    if let Some(timeout) = args.timeout {
        settings.config.timeouts.service = timeout;
        settings.config.timeouts.smoke = timeout;
    }
    if args.lock.no_wait {
        app.reporter.info(
            "warning: --no-wait is now spelled --lock-timeout 0 (--wait=false skips readiness)",
        );
    }
    let options = UpOptions {
        on_failure: args.on_failure,
        lock_timeout: args.lock.timeout(),
        wait: args.wait,
        wait_for_images: args.wait_for_images,
    };
    let reporter = &app.reporter;
    // Ctrl-C drops the pipeline where it stands: the lock is given back on the way out, and the
    // inventory written before each change lets the next `up` or `down` finish.
    let report = tokio::select! {
        report = pipeline::up(&settings, &app.cluster, options, reporter) => report?,
        _ = tokio::signal::ctrl_c() => {
            reporter.abandon();
            return Err(Interrupted(settings.namespace.clone()).into());
        }
    };
    if args.timings {
        reporter.info(&print::timings(&report.timings));
    }
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&report)?),
        Output::Text => {
            reporter.info(&format!(
                "sandbox `{}` is ready in {:.1}s",
                report.namespace, report.timings.total
            ));
            println!("{}", report.url);
        }
    }
    Ok(())
}

pub(super) async fn down(app: &App, args: DownArgs) -> Result<()> {
    let cluster = connect(&app.cluster)
        .await
        .context("cannot delete sandboxes")?;
    let config = app.load_config()?;
    if args.all_expired {
        let rows = reap::reap(&cluster, Some(&config.name), args.dry_run).await?;
        return print::reaped(&rows, Output::Text);
    }
    let branch = args
        .branch
        .as_deref()
        .expect("clap requires --branch without --all-expired");
    let namespace = sandbox_namespace(&cluster, &config, branch).await?;
    if args.dry_run {
        return pipeline::down_dry_run(&cluster, &namespace, &config.name).await;
    }
    let mut options = pipeline::DownOptions {
        lock_timeout: args.lock.timeout(),
        ..Default::default()
    };
    if let Some(timeout) = args.timeout {
        options.timeout = timeout;
    }
    pipeline::down(&cluster, &namespace, &config.name, options, &app.reporter).await
}

/// The namespace of the product's sandbox of `branch` (by an older name, if that is where it is).
async fn sandbox_namespace(
    cluster: &crate::kube::Cluster,
    config: &Config,
    branch: &str,
) -> Result<String> {
    let prefix = &config.namespace_prefix;
    Ok(record::locate(cluster, prefix, branch, &config.name).await?)
}

pub(super) async fn render(app: &App, args: RenderArgs) -> Result<()> {
    let settings = app.settings(&args.branch.branch, args.sets.0, None)?;
    if let Some(s) = &args.service {
        ensure_service(&settings.config, s)?;
    }
    let secrets = Secrets::revealed_if(args.reveal);
    let prepared = pipeline::prepare(&settings, secrets, &app.reporter).await?;
    let wanted = |service: &str| args.service.as_deref().is_none_or(|s| s == service);
    match args.output.output {
        ObjectsOutput::Json => println!("{}", print::plan_json(&prepared.plan, wanted)?),
        ObjectsOutput::Text | ObjectsOutput::Yaml => {
            print!("{}", print::plan_yaml(&prepared.plan, wanted)?)
        }
        ObjectsOutput::Name => print!("{}", print::plan_names(&prepared.plan, wanted)),
    }
    Ok(())
}

pub(super) async fn values(app: &App, args: ValuesArgs) -> Result<()> {
    let settings = app.settings(&args.branch.branch, args.sets.0, None)?;
    ensure_service(&settings.config, &args.service)?;
    let secrets = Secrets::revealed_if(args.reveal);
    let prepared = pipeline::prepare(&settings, secrets, &app.reporter).await?;
    // A chart is given its values and the sandbox's context under `global.sandbox`.
    let shown = match prepared.chart_values.get(&args.service) {
        Some(given) => given.clone(),
        None => {
            let values = &prepared.values[&args.service];
            match secrets {
                Secrets::Reveal => values.reveal().clone(),
                Secrets::Redact => values.redacted(),
            }
        }
    };
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
        Output::Text | Output::Yaml => print!("{}", serde_yaml_ng::to_string(&shown)?),
    }
    Ok(())
}

pub(super) async fn images(app: &App, args: ImagesArgs) -> Result<()> {
    let settings = app.settings(&args.branch.branch, Vec::new(), None)?;
    let gathered = prepare::gather(&settings, &app.reporter).await?;
    let mode = Mode::Ensure {
        wait: args.wait_for_images,
    };
    let target = prepare::local_target(&settings, &gathered, mode, &app.reporter).await?;
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&target.images)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&target.images)?),
        Output::Text => {
            for (service, image) in &target.images {
                println!("{service:<20} {}", image.reference);
            }
        }
    }
    Ok(())
}

pub(super) async fn list(app: &App, args: TableOutputArg) -> Result<()> {
    let cluster = connect(&app.cluster)
        .await
        .context("cannot list sandboxes")?;
    let rows = inspect::list(&cluster).await?;
    print::table(&inspect::list_table(&rows), &rows, args.output)?;
    Ok(())
}

pub(super) async fn status(app: &App, args: StatusArgs) -> Result<()> {
    let config = app.load_config()?;
    let cluster = connect(&app.cluster)
        .await
        .context("cannot read the sandbox")?;
    let namespace = sandbox_namespace(&cluster, &config, &args.branch.branch).await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    let rows = inspect::status(&cluster, &namespace).await?;
    print::table(&inspect::status_table(&rows), &rows, args.output.output)?;
    Ok(())
}

pub(super) async fn logs(app: &App, args: LogsArgs) -> Result<()> {
    let config = app.load_config()?;
    if let Some(s) = &args.service {
        ensure_service(&config, s)?;
    }
    let cluster = connect(&app.cluster)
        .await
        .context("cannot read the logs")?;
    let namespace = sandbox_namespace(&cluster, &config, &args.branch.branch).await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    let options = inspect::LogOptions {
        service: args.service,
        container: args.container,
        selector: args.selector,
        follow: args.follow,
        previous: args.previous,
        timestamps: args.timestamps,
        since: args.since,
        tail: args.tail,
    };
    tokio::select! {
        r = inspect::logs(&cluster, &namespace, &options) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Print what `up` would change; whether anything would.
pub(super) async fn diff(app: &App, args: DiffArgs) -> Result<bool> {
    let settings = app.settings(&args.branch.branch, args.sets.0, None)?;
    let (cluster, gathered) = tokio::join!(
        connect(&app.cluster),
        prepare::gather(&settings, &app.reporter)
    );
    let gathered = gathered?;
    let cluster = cluster.context("cannot compare with the cluster")?;
    let target =
        prepare::cluster_target(&cluster, &settings, &gathered, Mode::Resolve, &app.reporter)
            .await?;
    let prepared =
        prepare::render_and_plan(&settings, gathered, Secrets::Reveal, &target, &app.reporter)
            .await?;
    let plan = &prepared.plan;
    apply::check_served(&cluster, plan).context("the rendered objects cannot be deployed")?;
    let product = &settings.config.name;
    let changes = diff::diff(&cluster, plan, product, &prepared.secret_strings()).await?;
    let namespace = &plan.namespace;
    match args.output.output {
        ObjectsOutput::Text => print!(
            "{}",
            diff::unified(namespace, &changes, plan.objects().count())
        ),
        ObjectsOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diff::to_json(namespace, &changes))?
        ),
        ObjectsOutput::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&diff::to_json(namespace, &changes))?
        ),
        ObjectsOutput::Name => changes
            .iter()
            .for_each(|c| println!("{}", c.key().kind_name())),
    }
    Ok(!changes.is_empty())
}

pub(super) async fn validate(app: &App, args: ValidateArgs) -> Result<()> {
    let settings = app.settings(&args.branch.branch, args.sets.0, None)?;
    let reachable = async {
        tokio::time::timeout(Duration::from_secs(10), connect(&app.cluster))
            .await
            .ok()
            .and_then(Result::ok)
    };
    let (cluster, gathered) = tokio::join!(reachable, prepare::gather(&settings, &app.reporter));
    // Charts are rendered and images resolved for the cluster when there is one, as `up` would.
    let gathered = gathered?;
    let target = match &cluster {
        Some(cluster) => {
            prepare::cluster_target(cluster, &settings, &gathered, Mode::Resolve, &app.reporter)
                .await?
        }
        None => prepare::local_target(&settings, &gathered, Mode::Offline, &app.reporter).await?,
    };
    let prepared =
        prepare::render_and_plan(&settings, gathered, Secrets::Reveal, &target, &app.reporter)
            .await?;
    println!(
        "{}: {} services, {} objects render",
        settings.config.path.display(),
        settings.config.services.len(),
        prepared.plan.objects().count()
    );
    match cluster {
        Some(cluster) => {
            apply::check_served(&cluster, &prepared.plan)
                .context("the rendered objects cannot be deployed")?;
            let n = diff::validate_on_server(&cluster, &prepared.plan, &settings.config.name).await?;
            println!(
                "server-side dry run at {}: {n} objects accepted",
                cluster.server
            );
        }
        None => app.reporter.info(&format!(
            "no cluster reachable: the server-side dry run was skipped (charts rendered for Kubernetes {})",
            target.capabilities.kube_version
        )),
    }
    Ok(())
}

pub(super) async fn extend(app: &App, args: ExtendArgs) -> Result<()> {
    let config = app.load_config()?;
    let cluster = connect(&app.cluster)
        .await
        .context("cannot extend the sandbox")?;
    let namespace = sandbox_namespace(&cluster, &config, &args.branch.branch).await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    let ttl = jiff::SignedDuration::try_from(args.ttl).context("the TTL is too long")?;
    let expires = jiff::Timestamp::now()
        .checked_add(ttl)
        .context("the TTL is too long")?;
    // Extending counts as using it: the idle clock starts again.
    let update = Update {
        expires_at: Some(expires),
        last_used: Some(jiff::Timestamp::now()),
        ..Update::default()
    };
    record::update(&cluster, &namespace, update).await?;
    println!("{namespace} now expires at {expires}");
    Ok(())
}

pub(super) async fn sleep(app: &App, args: SleepArgs) -> Result<()> {
    let config = app.load_config()?;
    let cluster = connect(&app.cluster)
        .await
        .context("cannot put the sandbox to sleep")?;
    let branch = &args.branch.branch;
    let namespace = sandbox_namespace(&cluster, &config, branch).await?;
    let holder = crate::lock::holder_identity(&app.env.owner);
    let outcome = pipeline::sleep::sleep(
        &cluster,
        &namespace,
        &config.name,
        &holder,
        args.lock.timeout(),
        &app.reporter,
    )
    .await?;
    match outcome {
        Outcome::Slept(asleep) => println!(
            "{namespace} is asleep: {} workloads scaled to 0{} (`sandbox wake --branch {branch}` brings them back)",
            asleep.replicas.len(),
            cronjobs(&asleep, "suspended"),
        ),
        Outcome::AlreadyAsleep(since) => println!(
            "{namespace} was already asleep (since {})",
            since.map(|t| t.to_string()).unwrap_or_default()
        ),
        Outcome::Woken(_) | Outcome::AlreadyAwake => unreachable!("sleep only sleeps"),
    }
    Ok(())
}

/// `, 2 CronJobs suspended` when the sleep suspended any.
fn cronjobs(asleep: &record::Sleep, done: &str) -> String {
    match asleep.suspended.len() {
        0 => String::new(),
        1 => format!(", 1 CronJob {done}"),
        n => format!(", {n} CronJobs {done}"),
    }
}

pub(super) async fn wake(app: &App, args: WakeArgs) -> Result<()> {
    let config = app.load_config()?;
    let cluster = connect(&app.cluster)
        .await
        .context("cannot wake the sandbox")?;
    let namespace = sandbox_namespace(&cluster, &config, &args.branch.branch).await?;
    let holder = crate::lock::holder_identity(&app.env.owner);
    let timeout = args.timeout.unwrap_or(config.timeouts.service);
    let woken = pipeline::sleep::wake(
        &cluster,
        &namespace,
        &config.name,
        timeout,
        &holder,
        args.lock.timeout(),
        &app.reporter,
    );
    match woken.await? {
        Outcome::Woken(asleep) => println!(
            "{namespace} is awake: {} workloads ready again{}",
            asleep.replicas.len(),
            cronjobs(&asleep, "resumed"),
        ),
        Outcome::AlreadyAwake => println!("{namespace} was awake"),
        Outcome::Slept(_) | Outcome::AlreadyAsleep(_) => unreachable!("wake only wakes"),
    }
    Ok(())
}

pub(super) async fn reap(app: &App, args: ReapArgs) -> Result<()> {
    let cluster = connect(&app.cluster)
        .await
        .context("cannot reap sandboxes")?;
    // The product's own sandboxes, unless asked for every product's (the reaper CronJob, which
    // has no sandbox.yaml).
    let config = if args.all_products {
        None
    } else {
        Some(app.load_config().context(
            "`reap` deletes the expired sandboxes of the product in sandbox.yaml; pass --all-products for every product's",
        )?)
    };
    let product = config.as_ref().map(|c| c.name.as_str());
    let rows = reap::reap(&cluster, product, args.dry_run).await?;
    print::reaped(&rows, args.output.output)
}

pub(super) async fn reaper_manifests(app: &App, args: ReaperArgs) -> Result<()> {
    // What the cluster serves, when one answers quickly.
    let cluster = tokio::time::timeout(Duration::from_secs(5), connect(&app.cluster))
        .await
        .ok()
        .and_then(Result::ok);
    let api_version = match (args.cronjob_api_version, &cluster) {
        (Some(v), _) => v,
        (None, Some(c)) if c.resolve("batch/v1", "CronJob").is_none() => "batch/v1beta1".into(),
        // Else the current API.
        (None, _) => "batch/v1".to_owned(),
    };
    // The policy only where it is enforced: an older API server refuses the manifest.
    let confine = cluster
        .as_ref()
        .is_some_and(crate::access::serves_admission_policies)
        .then_some(args.confine.as_slice());
    let manifests = reap::reaper_manifests(
        &args.image,
        &args.schedule,
        &args.namespace,
        &api_version,
        confine,
    );
    print!("{manifests}");
    Ok(())
}

pub(super) fn completions(args: CompletionsArgs) -> Result<()> {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "sandbox", &mut std::io::stdout());
    Ok(())
}

/// Manual pages from the same definitions as `--help`, so they never disagree.
pub(super) fn man(args: ManArgs) -> Result<()> {
    let command = <crate::cli::Cli as clap::CommandFactory>::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command, &dir))
                .with_context(|| {
                    format!("cannot write the manual pages into `{}`", dir.display())
                })?;
            println!("wrote the manual pages into {}", dir.display());
        }
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("cannot print the manual page")?,
    }
    Ok(())
}

pub(super) async fn serve(app: &App, args: ServeArgs) -> Result<()> {
    let settings = serve::ServeSettings {
        listen: args.listen,
        status_listen: args.status_listen,
        webhook_secret_file: args.webhook_secret_file,
        concurrency: args.concurrency,
        max_body_bytes: args.max_body_bytes,
        max_connections: args.max_connections,
        github_api_url: args.github_api_url,
        github_app: args.github_app_id.zip(args.github_app_key_file),
        comment: args.comment,
        slack_webhook_url: args.slack_webhook_url,
        sets: args.sets.0,
        ttl: args.ttl,
        on_failure: args.on_failure,
        shutdown_grace: args.shutdown_grace,
        lock_timeout: args.lock_timeout,
        reconcile: !args.no_reconcile,
        resync: args.resync,
        skip_drafts: args.skip_drafts,
        environment_prefix: args.deployment_environment_prefix,
        state_namespace: args.state_namespace,
        prune_cache_every: args.prune_cache_every,
        prune_cache_older_than: args.prune_cache_older_than,
        env: crate::pipeline::Environment {
            access: args.sandbox_role.map(|role| crate::access::Access {
                accounts: args.service_account,
                cluster_role: role,
            }),
            ..app.env.clone()
        },
    };
    let config = app.load_config()?;
    if let Some(access) = &settings.env.access {
        refuse_binding_serves_role(&config, &access.cluster_role)?;
    }
    serve::run(settings, config, app.cluster.clone()).await
}

/// serve's in-sandbox ClusterRole (`--sandbox-role`) may have any name; sandbox.yaml must not
/// let a branch bind it (it holds the sandbox's lock and rewrites its last good revision).
fn refuse_binding_serves_role(config: &pipeline::config::Config, role: &str) -> Result<()> {
    if let Some(service) = config
        .services
        .iter()
        .find(|s| s.cluster_roles.contains(role))
    {
        anyhow::bail!(
            "{}: `services.{}.rbac.cluster_roles` (or the top-level `rbac`) lists `{role}`, serve's own ClusterRole in every sandbox (--sandbox-role): a branch could bind it and take the sandbox's lock or rewrite its last good revision; remove it from sandbox.yaml",
            config.path.display(),
            service.name
        );
    }
    Ok(())
}

pub(super) async fn cache_prune(app: &App, args: PruneArgs) -> Result<()> {
    let live = match pipeline::cache::live_commits(&app.cluster).await {
        Ok(live) => Some(live),
        Err(e) => {
            app.reporter.info(&format!(
                "warning: cannot ask the cluster which sandboxes are live ({e:#}); \
                 deleting trees unused for {} as well as mirrors",
                humantime::format_duration(args.older_than)
            ));
            None
        }
    };
    let report =
        pipeline::cache::prune(&app.env.cache_dir, live, args.older_than, args.dry_run).await?;
    print::pruned(&report, args.dry_run, args.output.output)
}

fn ensure_service(config: &Config, name: &str) -> Result<()> {
    if config.service(name).is_none() {
        anyhow::bail!("{}", unknown_service(config, name));
    }
    Ok(())
}
