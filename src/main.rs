//! The `weir` command line. Parsing only; the work is in `weir::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use weir::commands::{self, RunArgs, ValidateArgs};

/// Events are allocated by the thread that decodes them and freed by the
/// sink that delivered them. With the system allocator those cross-thread
/// frees contend for its arena locks: a quarter of a replay's CPU went to
/// malloc and free. mimalloc frees them to their page without a lock.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A structured-log shipper: tail, parse, measure, alert, forward."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (the embedded feynman.yaml when no file is given).
    Run {
        /// Pipeline YAML file.
        pipeline: Option<PathBuf>,
        /// Read what is there to the end, deliver it, and exit (replay / backfill).
        #[arg(long)]
        once: bool,
        /// Write the final Prometheus exposition here when the run ends
        /// (node_exporter textfile-collector format).
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// With --once and alert rules (a back-test): call the notifiers too.
        #[arg(long)]
        notify: bool,
        /// With --once: write a self-contained HTML report of the replay
        /// (events and errors over the logs' time, LLM cost per day and
        /// model, each alert's pending/firing/resolved timeline).
        #[arg(long, value_name = "PATH", requires = "once")]
        report: Option<PathBuf>,
    },
    /// Check pipeline files and Prometheus rule files (a top-level `groups:`);
    /// exit 2 with file:line:column on any problem. Alert rules are also
    /// linted for what can never fire (warnings; exit 2 with --strict).
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Lint bare rule files against this pipeline's metrics (without
        /// it, only the lints that need no pipeline run on them).
        #[arg(long, value_name = "PIPELINE")]
        pipeline: Option<PathBuf>,
        /// Exit 2 when a rule lint warns.
        #[arg(long)]
        strict: bool,
    },
    /// Run Prometheus rule unit-test files as `promtool test rules` does;
    /// exit 1 if any test fails.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// What alert rules would have done over old logs: evaluates them on the
    /// logs' own time and writes every alert that would have fired to
    /// <data_dir>/backtest/alerts.ndjson (no notifier is called without --notify).
    Backtest {
        /// Rule files (globs).
        #[arg(required = true)]
        rules: Vec<String>,
        /// The logs to read (globs; rotated and gzipped generations too).
        #[arg(long, required = true)]
        logs: Vec<String>,
        /// The pipeline whose metrics the rules read (default: the embedded feynman.yaml).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Leave out lines before this time (RFC 3339, a date, or Unix seconds).
        #[arg(long)]
        from: Option<String>,
        /// Leave out lines after this time.
        #[arg(long)]
        to: Option<String>,
        /// How far out of order a line may be and still count at its own time (default 5m).
        #[arg(long)]
        window: Option<String>,
        /// Call the pipeline's notifiers with what fires.
        #[arg(long)]
        notify: bool,
        /// Write a self-contained HTML report (events and errors over
        /// time, LLM cost per day and model, alert timelines).
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
    },
    /// Look at the sinks' disk buffers.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// Work with the pipeline's alert rules outside weir.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Grafana dashboards for what the pipeline derives.
    Dashboards {
        #[command(subcommand)]
        command: DashboardsCommand,
    },
    /// Stream the events leaving components of a running weir, as JSON
    /// lines, over its local API.
    Tap(weir::tap::client::TapArgs),
    /// Throughput of a running weir, per source and sink, refreshed every
    /// second from its local API's /metrics.
    Top(weir::top::TopArgs),
    /// Write synthetic logs in the Feynman app's format (fixtures, benchmarks).
    Generate {
        /// Number of lines.
        #[arg(long, default_value_t = 1000)]
        lines: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only valid JSON lines (no uvicorn text, no truncated lines).
        #[arg(long)]
        clean: bool,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Also write the metrics pipelines/feynman.yaml must derive from
        /// these lines (Prometheus text format), for exact comparisons.
        #[arg(long, value_name = "PATH")]
        truth: Option<PathBuf>,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    Completions { shell: weir::cli_docs::Shell },
    /// Print the man page (roff), or with --output write one page per command.
    Man {
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BufferCommand {
    /// What a disk buffer holds: records, events, bytes and the oldest
    /// event time of what is not yet delivered (weir may be running or not).
    Inspect {
        /// Only this sink (default: every sink with a disk buffer).
        sink: Option<String>,
        /// Pipeline YAML file (default: the embedded feynman.yaml).
        #[arg(long, conflicts_with = "data_dir")]
        pipeline: Option<PathBuf>,
        /// Read the buffers under this data_dir instead of a pipeline's.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Write the rules for a Prometheus (rule files + prometheus.yml) or
    /// a Loki ruler (the rules rewritten in LogQL over the shipped logs).
    Export {
        /// `prometheus` or `loki`.
        #[arg(long, value_parser = ["prometheus", "loki"])]
        to: String,
        /// Pipeline YAML file (default: the embedded feynman.yaml).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Output directory (default: ./export/<to>).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Loki: the LogQL stream selector (default: the Loki sink's fixed labels).
        #[arg(long)]
        selector: Option<String>,
    },
}

#[derive(Subcommand)]
enum DashboardsCommand {
    /// Write Grafana dashboards (system overview, business, weir's own
    /// health) as JSON that Grafana's Dashboards → Import takes as it is.
    ///
    /// Panels read the metric and label names the pipeline's metrics sinks
    /// derive; a panel whose metrics are not derived is left out and named
    /// on standard error. The paths written are printed on standard output.
    /// The data source may be a Prometheus scraping weir, or weir itself
    /// (its query API on the pipeline's api address when alerting is set).
    Export {
        /// Pipeline YAML file (default: the embedded feynman.yaml).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Output directory (default: ./dashboards).
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Write this fixed data source uid instead of an import input
        /// (`${DS_PROMETHEUS}`), for Grafana's file provisioning.
        #[arg(long, value_name = "NAME")]
        datasource: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(commands::EXIT_CONFIG),
            };
        }
    };
    commands::init_logging();
    match cli.command {
        Command::Run {
            pipeline,
            once,
            metrics_file,
            notify,
            report,
        } => commands::run(RunArgs {
            pipeline,
            once,
            metrics_file,
            notify,
            report,
            backtest: Default::default(),
        }),
        Command::Backtest {
            rules,
            logs,
            pipeline,
            from,
            to,
            window,
            notify,
            report,
        } => commands::backtest(commands::BacktestCommand {
            rules,
            logs,
            pipeline,
            from,
            to,
            window,
            notify,
            report,
        }),
        Command::Validate {
            pipelines,
            pipeline,
            strict,
        } => commands::validate(&pipelines, &ValidateArgs { pipeline, strict }),
        Command::Test { files } => commands::test(&files),
        Command::Buffer {
            command:
                BufferCommand::Inspect {
                    sink,
                    pipeline,
                    data_dir,
                    json,
                },
        } => commands::inspect_buffers(
            pipeline.as_deref(),
            data_dir.as_deref(),
            sink.as_deref(),
            json,
        ),
        Command::Rules {
            command:
                RulesCommand::Export {
                    to,
                    pipeline,
                    output,
                    selector,
                },
        } => commands::export_rules(
            &to,
            pipeline.as_deref(),
            output.as_deref(),
            selector.as_deref(),
        ),
        Command::Dashboards {
            command:
                DashboardsCommand::Export {
                    pipeline,
                    output,
                    datasource,
                },
        } => commands::export_dashboards(
            pipeline.as_deref(),
            output.as_deref(),
            datasource.as_deref(),
        ),
        Command::Tap(args) => weir::tap::client::run(args),
        Command::Top(args) => weir::top::run(args),
        Command::Generate {
            lines,
            seed,
            clean,
            output,
            truth,
        } => commands::generate(lines, seed, !clean, output.as_deref(), truth.as_deref()),
        Command::Completions { shell } => weir::cli_docs::completions(Cli::command(), shell),
        Command::Man { output } => weir::cli_docs::man(Cli::command(), output.as_deref()),
    }
}
