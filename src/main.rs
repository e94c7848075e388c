//! The `weir` command line. Parsing only; the work is in `weir::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir::commands::{self, RunArgs};

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
    },
    /// Check pipeline files and Prometheus rule files (a top-level `groups:`);
    /// exit 2 with file:line:column on any problem.
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Run Prometheus rule unit-test files as `promtool test rules` does;
    /// exit 1 if any test fails.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Work with the pipeline's alert rules outside weir.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
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
        } => commands::run(RunArgs {
            pipeline,
            once,
            metrics_file,
        }),
        Command::Validate { pipelines } => commands::validate(&pipelines),
        Command::Test { files } => commands::test(&files),
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
        Command::Generate {
            lines,
            seed,
            clean,
            output,
            truth,
        } => commands::generate(lines, seed, !clean, output.as_deref(), truth.as_deref()),
    }
}
