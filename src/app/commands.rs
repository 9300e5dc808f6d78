//! One function per command: flags → the operation's request (`crate::ops`), then its report
//! printed.

use anyhow::{Context, Result};

use super::{print, App};
use crate::cli::{
    CompletionsArgs, DiffArgs, DownArgs, ExtendArgs, ImagesArgs, InitArgs, LogsArgs, ManArgs,
    ObjectsOutput, Output, PruneArgs, RbacUserArgs, ReapArgs, ReaperArgs, RenderArgs, SchemaArgs,
    ServeArgs, SleepArgs, StatusArgs, TableOutputArg, UpArgs, ValidateArgs, ValuesArgs, WakeArgs,
};
use crate::ops::down::{AskedBy, DownOptions, DownRequest, Downed};
use crate::ops::inspect::{LogOptions, SandboxOf};
use crate::ops::render::RenderRequest;
use crate::ops::sleep::{Outcome, SleepRequest};
use crate::ops::validate::ServerCheck;
use crate::ops::{self, Interrupted, UpOptions, UpRequest};
use crate::pipeline::{self, Secrets};
use crate::record;
use crate::serve;

pub(super) async fn up(app: &App, args: UpArgs) -> Result<()> {
    let mut settings = app.settings(&app.branch(&args.branch)?, args.sets.0, args.ttl)?;
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
        on_failure: args.on_failure.into(),
        lock_timeout: args.lock.timeout(),
        wait: args.wait,
        wait_for_images: args.wait_for_images,
        record_every_failure: false,
    };
    let request = UpRequest { settings, options };
    let reporter = &app.reporter;
    // Ctrl-C drops the pipeline where it stands: the lock is given back on the way out, and the
    // inventory written before each change lets the next `up` or `down` finish.
    let report = tokio::select! {
        report = ops::up(&request, &app.cluster, reporter) => report?,
        _ = tokio::signal::ctrl_c() => {
            reporter.abandon();
            return Err(Interrupted(request.settings.namespace.clone()).into());
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
    let config = app.load_config()?;
    if args.all_expired {
        let rows = ops::reap::reap(&app.cluster, Some(&config.name), args.dry_run).await?;
        return print::reaped(&rows, Output::Text);
    }
    let branch = args
        .branch
        .as_deref()
        .expect("clap requires --branch without --all-expired");
    let mut options = DownOptions {
        lock_timeout: args.lock.timeout(),
        ..Default::default()
    };
    if let Some(timeout) = args.timeout {
        options.timeout = timeout;
    }
    let request = DownRequest {
        config: &config,
        branch,
        dry_run: args.dry_run,
        options,
        asked_by: AskedBy::User,
    };
    match ops::down::down(&request, &app.cluster, &app.reporter).await? {
        Downed::WouldDelete { line } => println!("{line}"),
        Downed::Deleted { .. } | Downed::Kept { .. } => {}
    }
    Ok(())
}

pub(super) async fn render(app: &App, args: RenderArgs) -> Result<()> {
    let settings = app.settings(&app.branch(&args.branch)?, args.sets.0, None)?;
    let request = RenderRequest {
        settings: &settings,
        secrets: Secrets::revealed_if(args.reveal),
        service: args.service.as_deref(),
    };
    let plan = ops::render::render(&request, &app.reporter).await?;
    let wanted = |service: &str| args.service.as_deref().is_none_or(|s| s == service);
    match args.output.output {
        ObjectsOutput::Json => println!("{}", print::plan_json(&plan, wanted)?),
        ObjectsOutput::Text | ObjectsOutput::Yaml => {
            print!("{}", print::plan_yaml(&plan, wanted)?)
        }
        ObjectsOutput::Name => print!("{}", print::plan_names(&plan, wanted)),
    }
    Ok(())
}

pub(super) async fn values(app: &App, args: ValuesArgs) -> Result<()> {
    let settings = app.settings(&app.branch(&args.branch)?, args.sets.0, None)?;
    let request = RenderRequest {
        settings: &settings,
        secrets: Secrets::revealed_if(args.reveal),
        service: Some(&args.service),
    };
    let shown = ops::render::values(&request, &app.reporter).await?;
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
        Output::Text | Output::Yaml => print!("{}", serde_yaml_ng::to_string(&shown)?),
    }
    Ok(())
}

pub(super) async fn images(app: &App, args: ImagesArgs) -> Result<()> {
    let settings = app.settings(&app.branch(&args.branch)?, Vec::new(), None)?;
    let images = ops::images::images(&settings, args.wait_for_images, &app.reporter).await?;
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&images)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&images)?),
        Output::Text => {
            for (service, image) in &images {
                println!("{service:<20} {}", image.reference);
            }
        }
    }
    Ok(())
}

pub(super) async fn list(app: &App, args: TableOutputArg) -> Result<()> {
    let rows = ops::inspect::list(&app.cluster).await?;
    print::table(&print::list_table(&rows), &rows, args.output)?;
    Ok(())
}

pub(super) async fn status(app: &App, args: StatusArgs) -> Result<()> {
    let config = app.load_config()?;
    let which = SandboxOf {
        config: &config,
        branch: &app.branch(&args.branch)?,
    };
    let rows = ops::inspect::status(&which, &app.cluster).await?;
    print::table(&print::status_table(&rows), &rows, args.output.output)?;
    Ok(())
}

pub(super) async fn logs(app: &App, args: LogsArgs) -> Result<()> {
    let config = app.load_config()?;
    if let Some(s) = &args.service {
        ensure_service(&config, s)?;
    }
    let which = SandboxOf {
        config: &config,
        branch: &app.branch(&args.branch)?,
    };
    let options = LogOptions {
        service: args.service,
        container: args.container,
        selector: args.selector,
        follow: args.follow,
        previous: args.previous,
        timestamps: args.timestamps,
        since: args.since,
        tail: args.tail,
    };
    ops::inspect::logs(&which, &options, &app.cluster).await
}

/// Print what `up` would change; whether anything would.
pub(super) async fn diff(app: &App, args: DiffArgs) -> Result<bool> {
    let settings = app.settings(&app.branch(&args.branch)?, args.sets.0, None)?;
    let report = ops::diff::diff(&settings, &app.cluster, &app.reporter).await?;
    match args.output.output {
        ObjectsOutput::Text => print!("{}", report.unified()),
        ObjectsOutput::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        ObjectsOutput::Yaml => print!("{}", serde_yaml_ng::to_string(&report.to_json())?),
        ObjectsOutput::Name => report
            .changes
            .iter()
            .for_each(|c| println!("{}", c.key().kind_name())),
    }
    Ok(!report.changes.is_empty())
}

pub(super) async fn validate(app: &App, args: ValidateArgs) -> Result<()> {
    let settings = app.settings(&app.branch(&args.branch)?, args.sets.0, None)?;
    let validated = ops::validate::validate(&settings, &app.cluster, &app.reporter).await?;
    println!(
        "{}: {} services, {} objects render",
        settings.config.path.display(),
        validated.services,
        validated.objects
    );
    match validated.server {
        ServerCheck::Accepted { server, objects } => {
            println!("server-side dry run at {server}: {objects} objects accepted")
        }
        ServerCheck::Refused(error) => return Err(error),
        ServerCheck::Skipped { kube_version } => app.reporter.info(&format!(
            "no cluster reachable: the server-side dry run was skipped (charts rendered for Kubernetes {kube_version})"
        )),
    }
    Ok(())
}

pub(super) async fn extend(app: &App, args: ExtendArgs) -> Result<()> {
    let config = app.load_config()?;
    let request = ops::extend::ExtendRequest {
        config: &config,
        branch: &app.branch(&args.branch)?,
        ttl: args.ttl,
    };
    let extended = ops::extend::extend(&request, &app.cluster).await?;
    println!("{} now expires at {}", extended.namespace, extended.expires);
    Ok(())
}

pub(super) async fn sleep(app: &App, args: SleepArgs) -> Result<()> {
    let config = app.load_config()?;
    let branch = &app.branch(&args.branch)?;
    let request = SleepRequest {
        config: &config,
        branch,
        holder: crate::lock::holder_identity(&app.env.owner),
        lock_timeout: args.lock.timeout(),
    };
    let slept = ops::sleep::sleep(&request, &app.cluster, &app.reporter).await?;
    let namespace = &slept.namespace;
    match slept.outcome {
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
    let request = SleepRequest {
        config: &config,
        branch: &app.branch(&args.branch)?,
        holder: crate::lock::holder_identity(&app.env.owner),
        lock_timeout: args.lock.timeout(),
    };
    let woken = ops::sleep::wake(&request, args.timeout, &app.cluster, &app.reporter).await?;
    let namespace = &woken.namespace;
    match woken.outcome {
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
    let rows = ops::reap::reap(&app.cluster, product, args.dry_run).await?;
    print::reaped(&rows, args.output.output)
}

pub(super) async fn reaper_manifests(app: &App, args: ReaperArgs) -> Result<()> {
    let request = ops::reap::ReaperRequest {
        image: &args.image,
        schedule: &args.schedule,
        namespace: &args.namespace,
        cronjob_api_version: args.cronjob_api_version,
        confine: &args.confine,
    };
    print!("{}", ops::reap::manifests(&request, &app.cluster).await);
    Ok(())
}

pub(super) fn completions(args: CompletionsArgs) -> Result<()> {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "sandbox", &mut std::io::stdout());
    Ok(())
}

pub(super) async fn init(app: &App, args: InitArgs) -> Result<()> {
    let registry = args
        .registry
        .unwrap_or_else(|| match std::env::var_os("SANDBOX_REGISTRY") {
            Some(_) => "${SANDBOX_REGISTRY}".into(),
            None => "registry.example.com".into(),
        });
    let request = ops::init::InitRequest {
        dir: args.dir,
        repos: args.repos,
        branch: args.branch,
        registry,
        insecure_registry: args.insecure_registry,
        name: args.name,
        cache_dir: app.env.cache_dir.clone(),
    };
    let report = ops::init::init(&request).await?;
    for path in &report.written {
        println!("wrote {}", path.display());
    }
    if let Some(kept) = &report.kept_schema {
        app.reporter
            .info(&format!("kept {} as it is", kept.display()));
    }
    app.reporter.info(&format!(
        "services: {}; next: `sandbox validate`, then `sandbox up`",
        report.services.join(", ")
    ));
    Ok(())
}

/// The RBAC a user needs.
pub(super) fn rbac_user(args: RbacUserArgs) -> Result<()> {
    let subjects = ops::rbac::Subjects {
        users: args.users,
        groups: args.groups,
    };
    print!("{}", ops::rbac::user_manifests(&subjects));
    Ok(())
}

/// The JSON Schema of sandbox.yaml, or the reference rendered from it.
pub(super) fn schema(args: SchemaArgs) -> Result<()> {
    let schema = ops::schema::json_schema();
    if args.markdown {
        print!("{}", ops::schema::markdown(&schema));
    } else {
        println!("{}", serde_json::to_string_pretty(&schema)?);
    }
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
        on_failure: args.on_failure.into(),
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
    let request = ops::cache::PruneRequest {
        cache_dir: &app.env.cache_dir,
        older_than: args.older_than,
        dry_run: args.dry_run,
    };
    let report = ops::cache::prune_cache(&request, &app.cluster, &app.reporter).await?;
    print::pruned(&report, args.dry_run, args.output.output)
}

fn ensure_service(config: &pipeline::config::Config, name: &str) -> Result<()> {
    if config.service(name).is_none() {
        anyhow::bail!("{}", pipeline::settings::unknown_service(config, name));
    }
    Ok(())
}
