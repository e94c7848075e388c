use std::path::Path;

use super::catalog::{Catalog, SELF_METRICS};
use super::{Lint, LintKind, lint_groups, lint_pipeline};
use crate::alert::live::config::LoadedGroup;
use crate::alert::rules;
use crate::config::{EMBEDDED_DEFAULT, Pipeline};
use LintKind::*;

fn pipeline(text: &str) -> Pipeline {
    Pipeline::from_text(text, "feynman.yaml", |_| None).expect("pipeline")
}

fn feynman() -> Catalog {
    Catalog::of_pipeline(&pipeline(EMBEDDED_DEFAULT), &[])
}

/// Lints one group of rules written as YAML list items.
fn lint(rules_yaml: &str, cat: Option<&Catalog>) -> Vec<Lint> {
    let text = format!("groups:\n- name: g\n  rules:\n{rules_yaml}");
    let rf = rules::from_text(&text, "t.yml").expect("rule file");
    let groups: Vec<LoadedGroup> = rf
        .groups
        .into_iter()
        .map(|group| LoadedGroup {
            file: "t.yml".into(),
            group,
        })
        .collect();
    match cat {
        Some(c) => {
            let mut c = c.clone();
            c.add_recordings(&groups);
            lint_groups(&groups, Some(&c))
        }
        None => lint_groups(&groups, None),
    }
}

fn alert(expr: &str, description: &str) -> String {
    format!(
        "  - alert: A\n    expr: '{expr}'\n    annotations:\n      description: '{description}'\n"
    )
}

fn kinds(expr: &str, description: &str) -> Vec<LintKind> {
    lint(&alert(expr, description), Some(&feynman()))
        .into_iter()
        .map(|l| l.kind)
        .collect()
}

#[test]
fn histogram_quantile_over_a_name_without_buckets() {
    let l = lint(
        &alert(
            "histogram_quantile(0.95, fastapi_request_duration_seconds) > 5",
            "",
        ),
        Some(&feynman()),
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, NoBuckets);
    let hint = l[0].hint.as_deref().unwrap();
    assert!(
        hint.contains(
            "histogram_quantile(0.95, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m])))"
        ),
        "{hint}"
    );
    assert_eq!(
        kinds(
            "histogram_quantile(0.9, rate(fastapi_requests_total[5m])) > 1",
            ""
        ),
        [NoBuckets]
    );
    let good = "histogram_quantile(0.95, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m]))) > 5";
    assert_eq!(kinds(good, ""), []);
}

#[test]
fn quantile_above_the_largest_bucket_never_fires() {
    let q = "histogram_quantile(0.95, rate(langgraph_workflow_duration_seconds_bucket[5m]))";
    let l = lint(&alert(&format!("{q} > 30"), ""), Some(&feynman()));
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, NeverTrue);
    assert!(
        l[0].message
            .contains("[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] (the default)"),
        "{}",
        l[0].message
    );
    assert!(l[0].hint.as_deref().unwrap().contains("buckets: [0.005,"));
    // 10 is the most it returns (the +Inf bucket's answer): `> 10` never, `>= 10` may.
    assert_eq!(kinds(&format!("{q} > 10"), ""), [NeverTrue]);
    assert_eq!(kinds(&format!("30 < {q}"), ""), [NeverTrue]);
    assert_eq!(kinds(&format!("{q} >= 10"), ""), []);
    assert_eq!(kinds(&format!("{q} > 5"), ""), []);
    // With buckets past 30 in the pipeline it can.
    let text = EMBEDDED_DEFAULT.replace(
        "      - name: langgraph_workflow_duration_seconds\n        type: histogram\n",
        "      - name: langgraph_workflow_duration_seconds\n        type: histogram\n        buckets: [1, 10, 30, 60]\n",
    );
    assert_ne!(text, EMBEDDED_DEFAULT);
    let cat = Catalog::of_pipeline(&pipeline(&text), &[]);
    assert!(lint(&alert(&format!("{q} > 30"), ""), Some(&cat)).is_empty());
}

#[test]
fn metrics_nobody_derives() {
    let l = lint(
        &alert(r#"up{job="external_apis"} == 0"#, ""),
        Some(&feynman()),
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, UnknownMetric);
    assert!(l[0].hint.as_deref().unwrap().contains("no `up`"));
    let l = lint(
        &alert("rate(fastapi_request_total[5m]) > 1", ""),
        Some(&feynman()),
    );
    assert_eq!(
        l[0].hint.as_deref(),
        Some("did you mean `fastapi_requests_total`?")
    );
    // A histogram's bare name outside histogram_quantile.
    assert_eq!(
        kinds("rate(agent_tool_call_duration_seconds[5m]) > 1", ""),
        [UnknownMetric]
    );
    // Derived, cost, self-metrics, ALERTS and recorded series are there.
    for expr in [
        "rate(agent_tool_call_duration_seconds_count[5m]) > 1",
        "llm_daily_budget_usd < 1",
        "rate(weir_events_out_total[5m]) == 0",
        "weir_files_open > 100",
        r#"ALERTS{alertstate="firing"} > 0"#,
    ] {
        assert_eq!(kinds(expr, ""), [], "{expr}");
    }
    let recorded = "  - record: tool:errors:rate5m\n    expr: sum by (tool_name) (rate(agent_tool_errors_total[5m]))\n"
        .to_string()
        + &alert("tool:errors:rate5m > 1", "{{ $labels.tool_name }}");
    assert!(lint(&recorded, Some(&feynman())).is_empty());
}

#[test]
fn labels_the_result_cannot_have() {
    let l = lint(
        &alert(
            "sum(rate(agent_tool_errors_total[5m])) > 1",
            "工具 {{ $labels.tool_name }}",
        ),
        Some(&feynman()),
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, DroppedLabel);
    assert!(
        l[0].message.contains("`$labels.tool_name`"),
        "{}",
        l[0].message
    );
    assert!(l[0].hint.as_deref().unwrap().contains("sum by (tool_name)"));
    let d = "{{ $labels.tool_name }}";
    assert_eq!(
        kinds(
            "sum by (tool_name) (rate(agent_tool_errors_total[5m])) > 1",
            d
        ),
        []
    );
    assert_eq!(
        kinds(
            "sum without (error_type) (rate(agent_tool_errors_total[5m])) > 1",
            d
        ),
        []
    );
    assert_eq!(
        kinds(
            "sum(rate(agent_tool_errors_total[5m])) > 1",
            "{{ .Labels.tool_name }}"
        ),
        [DroppedLabel]
    );
    // A label the metric never has.
    assert_eq!(
        kinds(
            "rate(agent_tool_errors_total[5m]) > 1",
            "{{ $labels.model }}"
        ),
        [DroppedLabel]
    );
    // on() keeps only its names (one-to-one), ignoring() drops them.
    let on = "rate(agent_tool_errors_total[5m]) / on (tool_name) sum by (tool_name) (rate(agent_tool_calls_total[5m])) > 0.1";
    assert_eq!(kinds(on, d), []);
    assert_eq!(kinds(on, "{{ $labels.error_type }}"), [DroppedLabel]);
    let ign = "rate(agent_tool_errors_total[5m]) / ignoring (error_type) group_left sum without (status) (rate(agent_tool_calls_total[5m])) > 0.1";
    assert_eq!(
        kinds(ign, "{{ $labels.error_type }} {{ $labels.tool_name }}"),
        []
    );
    // histogram_quantile drops `le`; label_replace adds its target.
    let q = "histogram_quantile(0.9, rate(agent_tool_call_duration_seconds_bucket[5m])) > 1";
    assert_eq!(kinds(q, "{{ $labels.tool_name }}"), []);
    assert_eq!(kinds(q, "{{ $labels.le }}"), [DroppedLabel]);
    let lr = r#"label_replace(sum(rate(agent_tool_errors_total[5m])), "team", "ai", "", "") > 1"#;
    assert_eq!(kinds(lr, "{{ $labels.team }}"), []);
    // Without a catalog only what the operations drop is known.
    let none = |e: &str, d: &str| {
        lint(&alert(e, d), None)
            .into_iter()
            .map(|l| l.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        none("sum(rate(anything_total[5m])) > 1", "{{ $labels.x }}"),
        [DroppedLabel]
    );
    assert_eq!(none("rate(anything_total[5m]) > 1", "{{ $labels.x }}"), []);
}

#[test]
fn per_second_rates_against_thresholds_per_minute_or_hour() {
    let e = "rate(llm_tokens_used_total[5m]) > 10000";
    let l = lint(&alert(e, "每分钟Token使用量超过1万"), Some(&feynman()));
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, RateUnits);
    assert!(
        l[0].message.contains("per minute (\"每分钟\")"),
        "{}",
        l[0].message
    );
    assert_eq!(kinds(e, "more than 10000 tokens per hour"), [RateUnits]);
    assert_eq!(
        kinds(
            "sum(rate(fastapi_requests_total[5m])) > 50",
            "5分钟内4xx错误数 {{ $value }}"
        ),
        [RateUnits]
    );
    // Sized per second, scaled, counted with increase(), or a ratio: fine.
    assert_eq!(kinds(e, "每秒Token超过1万"), []);
    assert_eq!(
        kinds(
            "rate(llm_tokens_used_total[5m]) * 60 > 10000",
            "每分钟Token超过1万"
        ),
        []
    );
    assert_eq!(
        kinds(
            "increase(llm_tokens_used_total[1h]) > 1000000",
            "1小时内Token使用量超过100万"
        ),
        []
    );
    let ratio = "sum(rate(fastapi_requests_total{status_code=~\"5..\"}[1h])) / sum(rate(fastapi_requests_total[1h])) > 0.3";
    assert_eq!(kinds(ratio, "1小时内错误率"), []);
    // The plan's rate compared with a ratio is another mistake, not this one.
    assert_eq!(
        kinds(
            "rate(fastapi_requests_total[5m]) > 0.1",
            "5分钟内API错误率 {{ $value }}，超过10%阈值"
        ),
        []
    );
}

#[test]
fn rates_of_gauges() {
    let l = lint(
        &alert("rate(sse_connections_active[5m]) > 1", ""),
        Some(&feynman()),
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, RateOfGauge);
    assert!(
        l[0].hint
            .as_deref()
            .unwrap()
            .contains("deriv(sse_connections_active[5m])")
    );
    assert_eq!(
        kinds("increase(llm_daily_budget_usd[1h]) > 1", ""),
        [RateOfGauge]
    );
    assert_eq!(kinds("deriv(sse_connections_active[5m]) > 1", ""), []);
    assert_eq!(kinds("rate(sse_messages_total[5m]) > 1", ""), []);
}

#[test]
fn daily_cost_gauges_compared_without_a_date() {
    let l = lint(&alert("llm_daily_costs_usd > 100", ""), Some(&feynman()));
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].kind, DailyByDate);
    assert!(l[0].message.contains("the last 7 days"), "{}", l[0].message);
    assert!(
        l[0].hint
            .as_deref()
            .unwrap()
            .contains("sum(increase(llm_costs_total_usd[24h])) > 100")
    );
    assert_eq!(
        kinds("llm_daily_budget_remaining_usd < 0", ""),
        [DailyByDate]
    );
    assert_eq!(
        kinds("max without (date) (llm_daily_costs_usd) > 100", ""),
        [DailyByDate]
    );
    assert_eq!(
        kinds(r#"llm_daily_costs_usd{date="2026-11-25"} > 100"#, ""),
        []
    );
    assert_eq!(
        kinds("sum(increase(llm_costs_total_usd[24h])) > 100", ""),
        []
    );
    assert_eq!(kinds("llm_daily_budget_usd < 10", ""), []);
}

/// The shipped rule files against the shipped pipelines: which rules get
/// which lint, and why each is really wrong in weir.
///
/// The plan's 6 (`feynman.yaml`): `HighAPILatency` gives histogram_quantile
/// the histogram's bare name (no `le`: never fires); `ExternalAPIDown`
/// reads `up`, which weir (scraping no targets) never has;
/// `DailyCostExceeded` compares every day's `llm_daily_costs_usd`, so it
/// goes on firing on yesterday's series. `HighErrorRate` (a per-second
/// rate against a 10 % ratio), `ToolCallFailures` and `HighTokenUsage`
/// (increase over 1 h against a per-hour figure: right) are not flagged.
///
/// The app's 30 (`alerting.yaml`), 20 flagged:
/// - metrics the pipeline does not derive (the app's own /metrics, or
///   node_exporter's): `APIServiceDown`/`ExternalAPIDown` (`up`),
///   `TooManyActiveConnections`, `HighCPUUsage`, `HighMemoryUsage` and
///   `LowDiskSpace` (two each), `WorkflowQueueBacklog`,
///   `HighLLMFailureRate`, `SlowLLMResponse`, `HighChromaDBLatency`,
///   `TooManyDBConnections`, `HighConversationAbandonRate`,
///   `LowUserSatisfaction`, `HighMemoryFailureRate`;
/// - `SlowWorkflowExecution` (`> 30`) and `HighToolLatency` (`> 10`) over
///   default buckets, whose largest is 10 s: never true;
/// - `HighWorkflowFailureRate` and `HighLLMFailureRate` print
///   `$labels.node_name` / `$labels.model` after a plain `sum()`;
///   `SuspiciousHighRequestRate` prints `$labels.instance`, which weir's
///   series do not have (`by (instance)` groups everything into one);
/// - `SuspiciousHighRequestRate` says 每分钟 (per minute) of a per-second
///   rate, `RapidTokenGrowth` 每小时 (per hour) of a difference of
///   per-second rates, `HighClientErrorRate` "5分钟内4xx错误数" (a count in
///   5 minutes) of a per-second rate.
///
/// Not flagged, and right: `HighAPILatency` (buckets, threshold 5 < 10),
/// `HighAPIErrorRate`, `HighToolFailureRate` (by tool_name on both sides),
/// `HighTokenUsage`, `DailyCostExceeded` (a rolling 24 h of the cost
/// counter), `HighSSEDisconnectRate`, `TooManyActiveSSEConnections`,
/// `NearMaxConcurrentConversations`, `HighParsingFailureRate`,
/// `ToolErrorBurst`.
#[test]
fn the_shipped_rules_against_the_shipped_pipelines() {
    let got = |file: &str| -> Vec<(String, LintKind)> {
        let p = Pipeline::load(Path::new(file)).expect("pipeline");
        lint_pipeline(&p)
            .into_iter()
            .map(|l| (l.rule, l.kind))
            .collect()
    };
    let want = |w: &[(&str, LintKind)]| -> Vec<(String, LintKind)> {
        w.iter().map(|(r, k)| (r.to_string(), *k)).collect()
    };
    assert_eq!(
        got("pipelines/feynman.yaml"),
        want(&[
            ("HighAPILatency", NoBuckets),
            ("ExternalAPIDown", UnknownMetric),
            ("DailyCostExceeded", DailyByDate),
        ])
    );
    assert_eq!(
        got("pipelines/alerting.yaml"),
        want(&[
            ("APIServiceDown", UnknownMetric),
            ("TooManyActiveConnections", UnknownMetric),
            ("HighCPUUsage", UnknownMetric),
            ("HighMemoryUsage", UnknownMetric),
            ("HighMemoryUsage", UnknownMetric),
            ("LowDiskSpace", UnknownMetric),
            ("LowDiskSpace", UnknownMetric),
            ("HighWorkflowFailureRate", DroppedLabel),
            ("SlowWorkflowExecution", NeverTrue),
            ("WorkflowQueueBacklog", UnknownMetric),
            ("ExternalAPIDown", UnknownMetric),
            ("HighToolLatency", NeverTrue),
            ("HighLLMFailureRate", UnknownMetric),
            ("HighLLMFailureRate", DroppedLabel),
            ("SlowLLMResponse", UnknownMetric),
            ("HighChromaDBLatency", UnknownMetric),
            ("TooManyDBConnections", UnknownMetric),
            ("HighConversationAbandonRate", UnknownMetric),
            ("LowUserSatisfaction", UnknownMetric),
            ("HighMemoryFailureRate", UnknownMetric),
            ("SuspiciousHighRequestRate", DroppedLabel),
            ("SuspiciousHighRequestRate", RateUnits),
            ("HighClientErrorRate", RateUnits),
            ("RapidTokenGrowth", RateUnits),
        ])
    );
}

/// Every source file under `src/`, without its `#[cfg(test)]` part.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !p.to_string_lossy().ends_with("tests.rs")
            {
                let text = std::fs::read_to_string(&p).unwrap();
                let text = match text.find("#[cfg(test)]") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                out.push((p.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("src"), &mut out);
    out
}

#[test]
fn self_metrics_are_the_registered_ones() {
    let src = sources();
    let call = regex::Regex::new(
        r#"(\.counter|\.gauge|CounterFamily::new)\(\s*(?:[a-z_&.]+,\s*)?"(weir_[a-z0-9_]+)""#,
    )
    .unwrap();
    let mut registered: Vec<(String, bool, &str)> = Vec::new();
    for (file, text) in &src {
        for c in call.captures_iter(text) {
            registered.push((c[2].to_string(), &c[1] != ".gauge", file.as_str()));
        }
    }
    for (name, counter, labels) in SELF_METRICS {
        let Some((_, c, file)) = registered.iter().find(|(n, _, _)| n == name) else {
            panic!("{name} is in SELF_METRICS but registered nowhere in src/");
        };
        assert_eq!(c, counter, "{name}: counter or gauge");
        let text = &src.iter().find(|(f, _)| f == file).unwrap().1;
        for l in *labels {
            assert!(
                text.contains(&format!("\"{l}\"")),
                "{name}: label {l} not in {file}"
            );
        }
    }
    for (name, _, file) in &registered {
        assert!(
            SELF_METRICS.iter().any(|(n, _, _)| n == name),
            "{name} (registered in {file}) is missing from SELF_METRICS"
        );
    }
}
