//! The cost of evaluating alert rules: the plan's six rules and the app's 30
//! (`pipelines/rules/`), every group once per step, over a day of history
//! of the metrics weir derives for the Feynman app — at least 10,000 series.
//!
//! Reports, in one run: how long loading the history took, how many series
//! and samples the store holds and roughly how much memory they take, the
//! time of one evaluation of all groups (best and median of the repeats),
//! and what evaluating every 15 s costs as CPU per hour of wall time.
//!
//! Run it with `cargo bench --bench rules`. `WEIR_RULES_INSTANCES` (default
//! 10) multiplies the series (each instance has the app's full label set);
//! `WEIR_RULES_REPEAT` (default 20) sets how many evaluations are timed;
//! `WEIR_RULES_HISTORY_HOURS` (default 24) how much history there is.

use std::path::Path;
use std::time::{Duration, Instant};

use weir::alert::group::{GroupEval, RuleResults, eval_groups};
use weir::alert::promql::storage::MemStorage;
use weir::alert::promql::value::Labels;
use weir::alert::rules;
use weir::alert::state::{Expander, no_templates};

mod common;

const STEP_MS: i64 = 15_000;
/// How much history the rules evaluate over: `WEIR_RULES_HISTORY_HOURS`
/// (default 24, a day, as the issue asks; the rules themselves read at
/// most the last hour of it, so this weighs the store's lookups).
fn history_ms() -> i64 {
    static H: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *H.get_or_init(|| {
        common::env_u64("WEIR_RULES_HISTORY_HOURS", 24)
            .unwrap_or(24)
            .max(1) as i64
            * 3_600_000
    })
}
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// One series' samples over the history: a counter that grows by `rate`
/// per step (with one reset), or a gauge around `level`.
fn fill(store: &mut MemStorage, labels: Labels, rate: f64, counter: bool) {
    let mut v = 0.0;
    for (i, t) in (0..=history_ms()).step_by(STEP_MS as usize).enumerate() {
        if counter {
            v = if i == 120 { rate } else { v + rate };
        } else {
            v = rate * (1.0 + ((i % 7) as f64) / 10.0);
        }
        store.append(labels.clone(), t, v);
    }
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut all = vec![("__name__", name)];
    all.extend_from_slice(pairs);
    Labels::from_pairs(all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// The derived metrics of `instances` app instances.
fn history(instances: usize) -> MemStorage {
    let mut s = MemStorage::new();
    let endpoints: Vec<String> = (0..20).map(|i| format!("/api/v1/route{i}")).collect();
    let tools = [
        "search",
        "calculator",
        "retriever",
        "code",
        "summarize",
        "translate",
        "quiz",
        "plan",
        "grade",
        "explain",
    ];
    let models = [
        "gpt-4o",
        "gpt-4o-mini",
        "glm-4",
        "deepseek-chat",
        "qwen-max",
    ];
    for inst in 0..instances {
        let instance = format!("pod-{inst}");
        let i = instance.as_str();
        for ep in &endpoints {
            for method in ["GET", "POST", "PUT", "DELETE"] {
                for (code, rate) in [
                    ("200", 50.0),
                    ("201", 5.0),
                    ("400", 1.0),
                    ("404", 0.5),
                    ("500", 0.2),
                ] {
                    let l = [
                        ("instance", i),
                        ("method", method),
                        ("endpoint", ep.as_str()),
                        ("status_code", code),
                    ];
                    fill(&mut s, labels("fastapi_requests_total", &l), rate, true);
                }
                for (b, le) in BUCKETS.iter().enumerate() {
                    let l = [
                        ("instance", i),
                        ("method", method),
                        ("endpoint", ep.as_str()),
                        ("le", le),
                    ];
                    fill(
                        &mut s,
                        labels("fastapi_request_duration_seconds_bucket", &l),
                        5.0 * (b + 1) as f64,
                        true,
                    );
                }
            }
        }
        for tool in tools {
            for status in ["success", "error"] {
                let l = [("instance", i), ("tool_name", tool), ("status", status)];
                fill(&mut s, labels("agent_tool_calls_total", &l), 2.0, true);
            }
            for (b, le) in BUCKETS.iter().enumerate() {
                let l = [("instance", i), ("tool_name", tool), ("le", le)];
                fill(
                    &mut s,
                    labels("agent_tool_call_duration_seconds_bucket", &l),
                    (b + 1) as f64,
                    true,
                );
            }
        }
        for model in models {
            for kind in ["prompt", "completion"] {
                let l = [("instance", i), ("model", model), ("token_type", kind)];
                fill(&mut s, labels("llm_tokens_used_total", &l), 900.0, true);
            }
            for (b, le) in BUCKETS.iter().enumerate() {
                let l = [("instance", i), ("model", model), ("le", le)];
                fill(
                    &mut s,
                    labels("llm_request_duration_seconds_bucket", &l),
                    (b + 1) as f64,
                    true,
                );
            }
            fill(
                &mut s,
                labels("llm_daily_costs_usd", &[("instance", i), ("model", model)]),
                12.0,
                false,
            );
        }
        for name in [
            "langgraph_workflow_duration_seconds_bucket",
            "chromadb_query_duration_seconds_bucket",
        ] {
            for (b, le) in BUCKETS.iter().enumerate() {
                fill(
                    &mut s,
                    labels(name, &[("instance", i), ("le", le)]),
                    (b + 1) as f64,
                    true,
                );
            }
        }
        for (name, level) in [
            ("system_cpu_usage_percent", 40.0),
            ("fastapi_active_connections", 30.0),
            ("sse_connections_active", 20.0),
            ("langgraph_workflow_queue_size", 3.0),
            ("database_connections_active", 8.0),
        ] {
            fill(&mut s, labels(name, &[("instance", i)]), level, false);
        }
        fill(
            &mut s,
            labels("up", &[("instance", i), ("job", "feynman-api")]),
            1.0,
            false,
        );
    }
    s
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let instances = common::env_u64("WEIR_RULES_INSTANCES", 10).unwrap_or(10) as usize;
    let repeat = common::env_u64("WEIR_RULES_REPEAT", 20).unwrap_or(20) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/rules");
    let mut groups: Vec<GroupEval> = Vec::new();
    let mut rule_count = 0;
    for file in ["alerting_rules.yml", "app-alerting-rules.yml"] {
        let f = match rules::load(&root.join(file)) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cannot load {file}: {e:?}");
                return std::process::ExitCode::FAILURE;
            }
        };
        rule_count += f.rule_count();
        groups.extend(f.groups.into_iter().map(GroupEval::new));
    }

    let rss_before = rss_kib();
    let started = Instant::now();
    let store = history(instances);
    let load = started.elapsed();
    let rss_after = rss_kib();
    let series = store.len();

    let defs: Vec<_> = groups.iter().map(|g| g.group().clone()).collect();
    let mut results = RuleResults::for_groups(&defs);
    let empty = Labels::new();
    let exp = Expander {
        render: &no_templates,
        external_labels: &empty,
        external_url: "",
    };
    let mut times: Vec<Duration> = Vec::with_capacity(repeat);
    let mut errors = 0;
    for k in 0..repeat {
        // Steps across the last minutes of the history, as a live run would.
        let t = history_ms() - (repeat - 1 - k) as i64 * STEP_MS;
        let start = Instant::now();
        let out = eval_groups(&mut groups, t, &store, &mut results, &exp);
        times.push(start.elapsed());
        errors += out.iter().flatten().filter(|o| o.error.is_some()).count();
    }
    times.sort();
    let best = times[0];
    let median = times[times.len() / 2];
    let per_hour = median.as_secs_f64() * (3_600_000 / STEP_MS) as f64;
    println!(
        "rules: {rule_count} in {} groups; history: {series} series × {} samples ({} h at 15 s), loaded in {:.2} s, ~{:.0} MiB",
        groups.len(),
        history_ms() / STEP_MS + 1,
        history_ms() / 3_600_000,
        load.as_secs_f64(),
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "one evaluation of every group: best {:.0} µs, median {:.0} µs ({repeat} runs); every 15 s that is {:.2} CPU s per hour of wall time ({:.3}% of a core); rule errors: {errors}",
        best.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6,
        per_hour,
        per_hour / 36.0
    );
    if series < 10_000 {
        eprintln!("only {series} series: raise WEIR_RULES_INSTANCES");
    }
    compare_with_promtool();
    std::process::ExitCode::SUCCESS
}

/// `weir test` over the whole rule-test suite against `promtool test rules`
/// over the same files, as whole processes (best of three each).
fn compare_with_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rule_tests");
    let mut files: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .map(|p| p.display().to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() || !Path::new("/usr/bin/promtool").exists() {
        println!(
            "weir test vs promtool: skipped (no tests/rule_tests/*.yml, or no /usr/bin/promtool)"
        );
        return;
    }
    let time = |program: &str, args: &[&str]| -> Option<Duration> {
        let mut best: Option<Duration> = None;
        for _ in 0..3 {
            let start = Instant::now();
            let status = std::process::Command::new(program)
                .args(args)
                .args(&files)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .ok()?;
            // Failing tests are part of the suite: any exit code counts.
            let _ = status;
            let took = start.elapsed();
            best = Some(best.map_or(took, |b| b.min(took)));
        }
        best
    };
    let weir = time(env!("CARGO_BIN_EXE_weir"), &["test"]);
    let promtool = time("/usr/bin/promtool", &["test", "rules"]);
    if let (Some(w), Some(p)) = (weir, promtool) {
        println!(
            "weir test vs promtool test rules over {} files: {:.3} s vs {:.3} s ({:.2}x promtool's time)",
            files.len(),
            w.as_secs_f64(),
            p.as_secs_f64(),
            w.as_secs_f64() / p.as_secs_f64()
        );
    }
}
