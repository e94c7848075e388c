//! What each CLI command does, behind the argument parsing in `main.rs`.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::alert::{lint, rules};
use crate::api::{self, ApiState};
use crate::config::{ConfigErrors, EMBEDDED_DEFAULT, Pipeline};
use crate::shutdown::Shutdown;
use crate::telemetry::Registry;
use crate::topology::{self, Outcome};

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// Options of `weir run`.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// `None`: the embedded default pipeline (pipelines/feynman.yaml).
    pub pipeline: Option<PathBuf>,
    pub once: bool,
    pub metrics_file: Option<PathBuf>,
    /// With `--once` and alert rules: call the notifiers (a back-test
    /// does not by default).
    pub notify: bool,
    /// With `--once`: where the HTML report of the replay goes.
    pub report: Option<PathBuf>,
    /// With `--once` and alert rules: the back-test's time span and
    /// out-of-order window.
    pub backtest: BacktestArgs,
}

/// The back-test's bounds (`weir backtest --from/--to/--window`).
#[derive(Debug, Clone, Default)]
pub struct BacktestArgs {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// 0: the default, 5 minutes.
    pub window_ms: i64,
    /// Where `backtest/alerts.ndjson` goes (default: the `data_dir`).
    pub out_dir: Option<PathBuf>,
}

fn load(path: Option<&Path>) -> Result<Pipeline, ConfigErrors> {
    match path {
        Some(p) => Pipeline::load(p),
        None => Pipeline::from_text(EMBEDDED_DEFAULT, "<embedded feynman.yaml>", |k| {
            std::env::var(k).ok()
        }),
    }
}

/// `weir buffer inspect [SINK]`: what the pipeline's disk buffers hold.
pub fn inspect_buffers(
    pipeline: Option<&Path>,
    data_dir: Option<&Path>,
    sink: Option<&str>,
    json: bool,
) -> ExitCode {
    use crate::buffer::inspect;
    let read = match data_dir {
        Some(d) => inspect::read_dir(d, sink).map(|r| (r, d.to_path_buf())),
        None => match load(pipeline) {
            Ok(p) => inspect::read(&p, sink).map(|r| (r, p.data_dir.clone())),
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match read {
        Ok((reports, _)) if json => print!("{}", inspect::json(&reports)),
        Ok((reports, dir)) => print!("{}", inspect::table(&reports, &dir)),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    ExitCode::SUCCESS
}

/// Options of `weir validate`.
#[derive(Debug, Clone, Default)]
pub struct ValidateArgs {
    /// The pipeline whose catalog bare rule files are linted against.
    pub pipeline: Option<PathBuf>,
    /// Lint warnings make the exit code 2.
    pub strict: bool,
}

/// `weir validate FILE...`: checks each file, prints every problem. A file
/// with a top-level `groups:` key is a Prometheus rule file, any other a
/// pipeline. Alert rules are then linted ([`crate::alert::lint`]): a
/// pipeline's against what it derives, a rule file's against the
/// `--pipeline` given, or without it with the lints that need no pipeline.
pub fn validate(paths: &[PathBuf], args: &ValidateArgs) -> ExitCode {
    let mut failed = false;
    let against = match &args.pipeline {
        None => None,
        Some(p) => match Pipeline::load(p) {
            Ok(p) => Some(p),
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let mut lints = Vec::new();
    for path in paths {
        let is_rules = std::fs::read_to_string(path).is_ok_and(|t| rules::is_rule_file(&t));
        if is_rules {
            match validate_rules(path) {
                Some(file) => lints.extend(lint::lint_rule_file(
                    &path.display().to_string(),
                    &file,
                    against.as_ref(),
                )),
                None => failed = true,
            }
            continue;
        }
        match Pipeline::load(path) {
            Ok(p) => {
                for w in &p.warnings {
                    eprintln!("warning: {w}");
                }
                let (s, t, k) = (p.sources.len(), p.transforms.len(), p.sinks.len());
                let rules = match &p.alerting {
                    Some(a) => {
                        let on = a.config.notify.iter().filter(|n| n.enabled()).count();
                        format!(
                            ", {} rule groups, {} rules, {on} of {} notifiers on",
                            a.groups.len(),
                            a.rule_count(),
                            a.config.notify.len()
                        )
                    }
                    None => String::new(),
                };
                println!(
                    "{}: ok ({s} sources, {t} transforms, {k} sinks{rules})",
                    path.display()
                );
                lints.extend(lint::lint_pipeline(&p));
            }
            Err(errors) => {
                failed = true;
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    for l in &lints {
        eprintln!("warning: {l}");
    }
    if args.strict && !lints.is_empty() {
        eprintln!(
            "error: {} rule lint warning(s), and --strict makes them errors",
            lints.len()
        );
        failed = true;
    }
    if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks a Prometheus rule file as `promtool check rules` does; `None`
/// if it has errors.
fn validate_rules(path: &Path) -> Option<rules::RuleFile> {
    match rules::load(path) {
        Ok(file) => {
            for w in &file.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} groups, {} rules)",
                path.display(),
                file.groups.len(),
                file.rule_count()
            );
            Some(file)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            None
        }
    }
}

/// `weir test FILE...`: runs rule unit-test files as `promtool test rules`
/// 2.42 does, with its output; exit 1 when a test fails (or a file cannot
/// be read or parsed), 0 otherwise.
pub fn test(files: &[PathBuf]) -> ExitCode {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match crate::alert::unittest::run_files(files, &mut out, &mut err) {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// `weir rules export --to prometheus|loki`: writes the pipeline's rules
/// for a Prometheus or a Loki ruler into `output` (default
/// `./export/<to>`); refusals and the summary go to standard error.
pub fn export_rules(
    to: &str,
    pipeline: Option<&Path>,
    output: Option<&Path>,
    selector: Option<&str>,
) -> ExitCode {
    let p = match load(pipeline) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let export = match to {
        "prometheus" => crate::alert::export::prometheus::export(&p),
        _ => crate::alert::export::loki::export(&p, selector),
    };
    let export = match export {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let dir = output.map_or_else(|| Path::new("export").join(to), Path::to_path_buf);
    for n in &export.notes {
        eprintln!("{n}");
    }
    if let Err(e) = export.write(&dir) {
        eprintln!("error: cannot write to {}: {e}", dir.display());
        return ExitCode::from(EXIT_RUNTIME);
    }
    for (f, _) in &export.files {
        println!("{}", dir.join(f).display());
    }
    ExitCode::SUCCESS
}

/// `weir dashboards export`: Grafana dashboard files for the pipeline's
/// derived metrics and weir's own, written under `output` (default
/// `./dashboards`); the paths written on standard output, what was left
/// out on standard error.
pub fn export_dashboards(
    pipeline: Option<&Path>,
    output: Option<&Path>,
    datasource: Option<&str>,
) -> ExitCode {
    let p = match load(pipeline) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            if let Some(path) = pipeline.filter(|p| !p.exists()) {
                eprintln!(
                    "error: no pipeline file {}: name an existing one with --pipeline PATH, or leave --pipeline out for the embedded feynman.yaml",
                    path.display()
                );
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let opts = crate::dashboards::Options {
        datasource: datasource.map(str::to_string),
    };
    let export = match crate::dashboards::export(&p, &opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for n in &export.notes {
        eprintln!("note: {n}");
    }
    let dir = output.unwrap_or(Path::new("dashboards"));
    match export.write(dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write to {}: {e}", dir.display());
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Options of `weir backtest`.
#[derive(Debug, Clone, Default)]
pub struct BacktestCommand {
    pub rules: Vec<String>,
    pub logs: Vec<String>,
    pub pipeline: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub window: Option<String>,
    pub notify: bool,
    pub report: Option<PathBuf>,
}

/// `weir backtest RULES --logs GLOB`: what the rules would have done over
/// old logs (see `alert::backtest::pipeline`).
pub fn backtest(cmd: BacktestCommand) -> ExitCode {
    let (text, origin) = match &cmd.pipeline {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (t, p.display().to_string()),
            Err(e) => {
                eprintln!("error: cannot read the pipeline file {}: {e}", p.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => (
            EMBEDDED_DEFAULT.to_string(),
            "<embedded feynman.yaml>".to_string(),
        ),
    };
    let expanded = match crate::config::env::expand(&text, |k| std::env::var(k).ok()) {
        Ok(x) => x.text,
        Err(errs) => {
            for e in errs {
                eprintln!("error: {origin}: {}", e.message);
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let bad = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    };
    let time = |s: &Option<String>| {
        s.as_deref()
            .map(crate::alert::backtest::pipeline::parse_time)
            .transpose()
    };
    let (from_ms, to_ms) = match (time(&cmd.from), time(&cmd.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let window_ms = match cmd
        .window
        .as_deref()
        .map(crate::alert::rules::parse_duration)
    {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(e)) => return bad(format!("--window: {e}")),
    };
    let scratch = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return bad(format!("cannot make a scratch directory: {e}")),
    };
    let built =
        crate::alert::backtest::pipeline::build(&crate::alert::backtest::pipeline::Request {
            text: &expanded,
            origin: &origin,
            rules: &cmd.rules,
            logs: &cmd.logs,
            notify: cmd.notify,
            scratch: &scratch,
        });
    let (pipeline, data_dir) = match built {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let code = run_pipeline(
        pipeline,
        RunArgs {
            pipeline: None,
            once: true,
            metrics_file: None,
            notify: cmd.notify,
            report: cmd.report.clone(),
            backtest: BacktestArgs {
                from_ms,
                to_ms,
                window_ms,
                out_dir: Some(data_dir),
            },
        },
    );
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000u32 {
        let d = base.join(format!("weir-backtest-{}-{n}", std::process::id()));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

/// `weir run`: runs a pipeline until it is stopped or, with `--once`, until
/// its input is read to the end.
pub fn run(args: RunArgs) -> ExitCode {
    let pipeline = match load(args.pipeline.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    run_pipeline(pipeline, args)
}

fn run_pipeline(pipeline: Pipeline, args: RunArgs) -> ExitCode {
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(run_async(pipeline, args))
}

async fn run_async(pipeline: Pipeline, args: RunArgs) -> ExitCode {
    let registry = Registry::default();
    registry
        .gauge(
            "weir_build_info",
            "weir's version, as a label; always 1.",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1);
    let shutdown = Shutdown::with_grace(pipeline.grace_period);
    let ready = Arc::new(AtomicBool::new(false));
    let taps = crate::tap::Taps::new(&registry);
    let api_stop = Shutdown::default();

    // As many descriptors as the system allows, for the files the sources
    // read; the API gets a bounded share of them.
    let open_files = match crate::rlimit::raise_nofile() {
        Ok(l) => l.soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit (RLIMIT_NOFILE); keeping it as it is");
            crate::rlimit::nofile().ok().and_then(|l| l.soft)
        }
    };
    // A replay with alert rules is a back-test: rules run on the logs' time.
    // A report is gathered by one too, without rules if there are none.
    let mut notifying = None;
    let no_rules;
    let alerting_of_backtest = match (&pipeline.alerting, args.once, &args.report) {
        (Some(a), true, _) => Some(&**a),
        (None, true, Some(_)) => {
            no_rules = crate::alert::live::Alerting::without_rules();
            tracing::info!(
                "the pipeline has no alerting: section; the report shows lines, errors and costs, and no alerts"
            );
            Some(&no_rules)
        }
        _ => None,
    };
    let backtest = match alerting_of_backtest {
        Some(a) => {
            let notify = if args.notify {
                match crate::alert::live::Service::notifiers(a, &registry, &pipeline.data_dir) {
                    Ok((tx, n)) => {
                        notifying = Some(n);
                        Some(tx)
                    }
                    Err(e) => {
                        eprintln!("error: cannot start the notifiers: {e}");
                        return ExitCode::from(EXIT_RUNTIME);
                    }
                }
            } else {
                None
            };
            let b = &args.backtest;
            let opts = crate::alert::backtest::Options {
                from_ms: b.from_ms,
                to_ms: b.to_ms,
                window_ms: if b.window_ms > 0 {
                    b.window_ms
                } else {
                    5 * 60_000
                },
                notify,
            };
            tracing::info!(
                notify = args.notify,
                "back-testing the alert rules on the logs' own time (notifiers are {})",
                if args.notify {
                    "on"
                } else {
                    "off; --notify turns them on"
                }
            );
            let out = b
                .out_dir
                .clone()
                .unwrap_or_else(|| pipeline.data_dir.clone());
            let bt = crate::alert::backtest::Backtest::new(a, &out, opts);
            Some(Arc::new(match &args.report {
                Some(_) => bt.with_report(registry.clone()),
                None => bt,
            }))
        }
        None => None,
    };
    let alerting = match pipeline.alerting.as_ref().filter(|_| backtest.is_none()) {
        Some(a) => match crate::alert::live::Service::start(a, &registry, &pipeline.data_dir) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                eprintln!("error: cannot start alerting: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        },
        None => None,
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let mut api_task = None;
    if pipeline.api.enabled {
        let addr: SocketAddr = pipeline.api.address.parse().expect("checked by validation");
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let limits = api::Limits::new(&pipeline.api, open_files);
                let api_v1 = if alerting.is_some() {
                    ", /api/summary, /api/v1/*"
                } else {
                    ""
                };
                tracing::info!(address = %bound, max_connections = limits.max_connections, "serving http://{bound}/metrics, /health, /ready, /tap{api_v1}; the live page is http://{bound}/");
                let state = ApiState {
                    registry: registry.clone(),
                    ready: ready.clone(),
                    reloads: Some(reload_tx.clone()),
                    rules: alerting
                        .as_ref()
                        .map(|s| s.live.clone() as Arc<dyn crate::alert::status::RulesView>),
                    taps: taps.clone(),
                };
                api_task = Some(tokio::spawn(api::serve(
                    listener,
                    state,
                    limits,
                    api_stop.clone(),
                )));
            }
            Err(e) => {
                eprintln!(
                    "error: cannot listen on {addr} for the API: {e}; set api.address (or WEIR_API_ADDR for the shipped pipelines) to a free address, or api.enabled: false"
                );
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    }

    let on_reloaded = {
        let alerting = alerting.clone();
        move |p: &Pipeline| match (&alerting, &p.alerting) {
            (Some(s), Some(a)) => s.reload(a),
            (None, Some(_)) => tracing::warn!(
                "reload: an `alerting:` section added to a running pipeline takes effect after a restart"
            ),
            (Some(_), None) => tracing::warn!(
                "reload: the `alerting:` section was removed; rules keep running until a restart"
            ),
            (None, None) => {}
        }
    };

    tokio::spawn(watch_signals(shutdown.clone(), reload_tx.clone()));
    let path = args.pipeline.clone();
    let loader: topology::Loader = Box::new(move || load(path.as_deref()));
    let outcome = topology::run(
        &pipeline,
        &registry,
        &shutdown,
        args.once,
        topology::Reloading {
            requests: reload_rx,
            load: loader,
            applied: Box::new(on_reloaded),
        },
        backtest.clone(),
        &taps,
        || {
            ready.store(true, Ordering::SeqCst);
            tracing::info!(pipeline = %pipeline.origin, once = args.once, "pipeline running");
        },
    )
    .await;
    ready.store(false, Ordering::SeqCst);
    taps.close();

    let mut code = match &outcome {
        Outcome::Drained => ExitCode::SUCCESS,
        Outcome::GraceExpired => {
            tracing::error!(grace_period = ?pipeline.grace_period, "stopped before the sinks delivered everything; what they did not deliver was not checkpointed, so file sources read it again after a restart");
            ExitCode::from(EXIT_RUNTIME)
        }
        Outcome::Failed(e) => {
            tracing::error!(error = %e, "pipeline failed");
            ExitCode::from(EXIT_RUNTIME)
        }
    };
    let undelivered = registry.sum("weir_sink_undelivered_events_total");
    if undelivered > 0 {
        tracing::error!(
            events = undelivered,
            "some events were not delivered; file sources read them again after a restart, standard input cannot"
        );
        code = ExitCode::from(EXIT_RUNTIME);
    }
    if let Some(path) = &args.metrics_file
        && let Err(e) = write_metrics_file(&registry, path)
    {
        eprintln!(
            "error: cannot write the metrics file {}: {e}",
            path.display()
        );
        code = ExitCode::from(EXIT_RUNTIME);
    }
    if let Some(s) = alerting
        && let Ok(s) = Arc::try_unwrap(s)
    {
        s.stop().await;
    }
    if let Some(bt) = &backtest {
        if bt.driven() {
            if bt.reporting()
                && let Some(path) = &args.report
            {
                let meta = crate::report::Meta {
                    pipeline: pipeline.origin.to_string(),
                    late_lines: registry.sum("weir_backtest_late_lines_total").max(0) as u64,
                    ..Default::default()
                };
                match bt.write_report(path, meta) {
                    Ok(()) => eprintln!("report: {}", path.display()),
                    Err(e) => {
                        eprintln!("error: cannot write the report {}: {e}", path.display());
                        code = ExitCode::from(EXIT_RUNTIME);
                    }
                }
            }
            if !bt.reporting() || pipeline.alerting.is_some() {
                print!("{}", bt.table());
            }
        } else {
            tracing::warn!(
                "nothing was back-tested: no `metrics` sink reads the inputs, so the rules had no metrics to read"
            );
        }
    }
    if let Some(n) = notifying {
        n.finish().await;
    }
    api_stop.trigger();
    if let Some(t) = api_task {
        let _ = t.await;
    }
    code
}

/// Writes the exposition atomically, as node_exporter's textfile collector
/// expects: into a temporary file beside the target, then renamed over it.
pub fn write_metrics_file(registry: &Registry, path: &Path) -> std::io::Result<()> {
    let mut text = String::new();
    registry.render(&mut text);
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// SIGTERM and SIGINT stop the pipeline (a second one exits at once).
/// SIGHUP reloads the pipeline file.
async fn watch_signals(
    shutdown: Shutdown,
    reloads: tokio::sync::mpsc::Sender<topology::ReloadRequest>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop weir with SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the pipeline");
                if reloads.try_send(topology::ReloadRequest { reply: None }).is_err() {
                    tracing::warn!("a reload is already pending; this SIGHUP adds nothing");
                }
                continue;
            }
        };
        if shutdown.is_triggered() {
            eprintln!("second signal ({name}): exiting at once");
            std::process::exit(i32::from(EXIT_RUNTIME));
        }
        tracing::info!("{name} received");
        shutdown.trigger();
    }
}

/// Sets up weir's own log on standard error. `WEIR_LOG` filters it
/// (`info` by default; e.g. `WEIR_LOG=debug`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `weir generate`: synthetic logs in the seed app's format, and optionally
/// the exact metrics pipelines/feynman.yaml must derive from them.
pub fn generate(
    lines: u64,
    seed: u64,
    malformed: bool,
    output: Option<&Path>,
    truth: Option<&Path>,
) -> ExitCode {
    let opts = weir_workload::WorkloadOptions {
        seed,
        malformed,
        ..Default::default()
    };
    let mut w = weir_workload::Workload::new(opts);
    if truth.is_some() {
        w.track_truth();
    }
    let counted = |out| crate::progress::CountingWriter::new(out, lines);
    let result = match output {
        Some(p) => std::fs::File::create(p).and_then(|f| {
            let mut out = counted(std::io::BufWriter::new(f));
            let n = w.write_lines(lines, &mut out)?;
            out.finish().flush()?;
            Ok(n)
        }),
        None => w.write_lines(lines, std::io::stdout().lock()),
    }
    .and_then(|_| match (truth, w.truth()) {
        (Some(p), Some(t)) => {
            std::fs::File::create(p).and_then(|f| t.write_exposition(std::io::BufWriter::new(f)))
        }
        _ => Ok(()),
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
