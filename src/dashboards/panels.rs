//! The panels of each dashboard and their PromQL, over the names the
//! pipeline derives ([`Derived`]). A panel whose metrics are not derived
//! is left out with a note saying why.

use super::derived::{Derived, Type};
use super::{Board, Panel};
use crate::config::Pipeline;

/// Grafana's rate window: at least four scrape intervals.
const R: &str = "$__rate_interval";

/// `sum by (labels) (rate(name{sel}[R]))`, or `sum(…)` without labels.
fn rate(name: &str, sel: &str, by: &[&str]) -> String {
    let inner = format!("rate({name}{sel}[{R}])");
    sum_by(by, &inner)
}

fn sum_by(by: &[&str], inner: &str) -> String {
    if by.is_empty() {
        format!("sum({inner})")
    } else {
        format!("sum by ({}) ({inner})", by.join(", "))
    }
}

/// The `q` quantile of histogram `h` over `rate(h_bucket)`, by `by`.
fn quantile(q: f64, h: &str, by: &[&str]) -> String {
    let mut labels = vec!["le"];
    labels.extend(by);
    format!(
        "histogram_quantile({q}, {})",
        rate(&format!("{h}_bucket"), "", &labels)
    )
}

/// The share of `name`'s rate whose `label` is `value`, by `by`; a group
/// with none of them counts 0 (not missing).
fn share(name: &str, label: &str, value: &str, by: &[&str], window: &str) -> String {
    let part = |sel: &str| {
        let inner = format!("{fun}({name}{sel}[{window}])", fun = fun(window));
        sum_by(by, &inner)
    };
    let sel = format!("{{{label}={value:?}}}");
    let all = part("");
    let zero = if by.is_empty() {
        "vector(0)".to_string()
    } else {
        format!("0 * {all}")
    };
    format!("({} or {zero}) / {all}", part(&sel))
}

/// `rate` over Grafana's rate window, `increase` over a fixed window.
fn fun(window: &str) -> &'static str {
    if window == R { "rate" } else { "increase" }
}

fn legend(labels: &[&str]) -> String {
    labels
        .iter()
        .map(|l| format!("{{{{{l}}}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn left_out(notes: &mut Vec<String>, board: &str, what: &str, why: &str) {
    notes.push(format!("{board}: left out {what}: {why}"));
}

fn timezone(d: &Derived) -> String {
    match d.costs.as_ref().map(|c| c.timezone.as_str()) {
        None | Some("UTC") | Some("Etc/UTC") => "utc".into(),
        Some(z) => z.to_string(),
    }
}

/// The plan's system overview: requests, latency, errors, tools, tokens, cost.
pub fn overview(d: &Derived, notes: &mut Vec<String>) -> Board {
    const B: &str = "weir-system-overview";
    let mut stats = Vec::new();
    let mut wide = Vec::new();
    let req = d.find(Type::Counter, "api_request", "fastapi_requests_total", true);
    let lat = d.find(
        Type::Histogram,
        "api_request",
        "fastapi_request_duration_seconds",
        false,
    );
    match req {
        Some(f) => {
            let n = &f.name;
            stats.push(
                Panel::new("stat", "Requests per second", "reqps").q(rate(n, "", &[]), "RPS"),
            );
            let status = f.label("status_code", "status_code");
            if let Some(st) = &status {
                let sel = format!("{{{st}=~\"5..\"}}");
                let ratio = format!(
                    "({} or vector(0)) / {}",
                    rate(n, &sel, &[]),
                    rate(n, "", &[])
                );
                let mut p = Panel::new("stat", "Server errors (5xx share)", "percentunit")
                    .q(ratio.clone(), "5xx")
                    .about("Responses with a 5xx status over all responses.");
                p.red_from = Some(0.05);
                stats.push(p);
            }
            let mut p =
                Panel::new("timeseries", "Request rate", "reqps").q(rate(n, "", &[]), "all");
            match f.label("path", "endpoint") {
                Some(ep) => p = p.q(rate(n, "", &[&ep]), legend(&[&ep])),
                None => left_out(
                    notes,
                    B,
                    "requests by endpoint",
                    &format!("`{n}` has no label from the `path` field"),
                ),
            }
            wide.push(p);
            match &status {
                Some(st) => wide.push(
                    Panel::new("timeseries", "Requests by status code", "reqps")
                        .q(rate(n, "", &[st]), legend(&[st])),
                ),
                None => left_out(
                    notes,
                    B,
                    "the 5xx share and requests by status",
                    &format!("`{n}` has no label from the `status_code` field"),
                ),
            }
        }
        None => left_out(
            notes,
            B,
            "request rate and errors",
            "no counter is derived from `api_request` events",
        ),
    }
    match lat {
        Some(h) => {
            let n = &h.name;
            stats.push(Panel::new("stat", "Latency p95", "s").q(quantile(0.95, n, &[]), "p95"));
            wide.push(
                Panel::new("timeseries", "Latency p50 / p95 / p99", "s")
                    .q(quantile(0.5, n, &[]), "p50")
                    .q(quantile(0.95, n, &[]), "p95")
                    .q(quantile(0.99, n, &[]), "p99"),
            );
            match h.label("path", "endpoint") {
                Some(ep) => wide.push(
                    Panel::new("timeseries", "Latency p95 by endpoint", "s")
                        .q(quantile(0.95, n, &[&ep]), legend(&[&ep])),
                ),
                None => left_out(
                    notes,
                    B,
                    "latency by endpoint",
                    &format!("`{n}` has no label from the `path` field"),
                ),
            }
        }
        None => left_out(
            notes,
            B,
            "latency",
            "no histogram is derived from `api_request` events",
        ),
    }
    match d.find(Type::Counter, "tool_call", "agent_tool_calls_total", true) {
        Some(f) => match (
            f.label("tool_name", "tool_name"),
            f.label("status", "status"),
        ) {
            (Some(tool), Some(st)) => {
                let n = &f.name;
                let mut p = Panel::new("stat", "Tool success rate", "percentunit")
                    .q(share(n, &st, "success", &[], R), "success")
                    .range(0.0, 1.0);
                p.red_from = Some(0.95);
                p.red_below = true;
                stats.push(p);
                let mut p = Panel::new("bargauge", "Tool success rate by tool", "percentunit")
                    .q(share(n, &st, "success", &[&tool], R), legend(&[&tool]))
                    .range(0.0, 1.0);
                p.red_from = Some(0.95);
                p.red_below = true;
                wide.push(p);
                wide.push(
                    Panel::new("timeseries", "Tool calls by tool and status", "short")
                        .q(rate(n, "", &[&tool, &st]), legend(&[&tool, &st])),
                );
                match d.find(
                    Type::Histogram,
                    "tool_call",
                    "agent_tool_call_duration_seconds",
                    false,
                ) {
                    Some(h) => {
                        let t = h.label("tool_name", "tool_name");
                        let by: Vec<&str> = t.iter().map(String::as_str).collect();
                        wide.push(Panel::new("timeseries", "Tool latency p95", "s").q(
                            quantile(0.95, &h.name, &by),
                            if by.is_empty() {
                                "p95".into()
                            } else {
                                legend(&by)
                            },
                        ));
                    }
                    None => left_out(
                        notes,
                        B,
                        "tool latency",
                        "no histogram is derived from `tool_call` events",
                    ),
                }
            }
            _ => left_out(
                notes,
                B,
                "tool success rate",
                &format!(
                    "`{}` needs labels from the `tool_name` and `status` fields",
                    f.name
                ),
            ),
        },
        None => left_out(
            notes,
            B,
            "tool success rate",
            "no counter is derived from every `tool_call` event",
        ),
    }
    match d.named("llm_tokens_used_total") {
        Some(f) => {
            let by: Vec<&str> = ["model", "type"]
                .into_iter()
                .filter(|l| f.labels.iter().any(|x| x == l))
                .collect();
            wide.push(
                Panel::new("timeseries", "Token rate by model and type", "short")
                    .q(
                        rate(&f.name, "", &by),
                        by.iter()
                            .map(|l| format!("{{{{{l}}}}}"))
                            .collect::<Vec<_>>()
                            .join(" - "),
                    )
                    .about("LLM tokens per second."),
            );
        }
        None => left_out(
            notes,
            B,
            "token rate",
            "the metrics sink has no `costs:` block (it derives llm_tokens_used_total)",
        ),
    }
    cost_panels(d, notes, &mut stats, &mut wide);
    {
        let event = "external_api";
        match d.find(Type::Counter, event, "external_api_requests_total", true) {
            Some(f) => {
                let by: Vec<String> = f.label("service", "service").into_iter().collect();
                let by: Vec<&str> = by.iter().map(String::as_str).collect();
                wide.push(
                    Panel::new("timeseries", "External API requests by service", "reqps").q(
                        rate(&f.name, "", &by),
                        if by.is_empty() {
                            "all".into()
                        } else {
                            legend(&by)
                        },
                    ),
                );
                if let Some(h) = d.find(
                    Type::Histogram,
                    event,
                    "external_api_request_duration_seconds",
                    false,
                ) {
                    wide.push(
                        Panel::new("timeseries", "External API latency p95 by service", "s").q(
                            quantile(0.95, &h.name, &by),
                            if by.is_empty() {
                                "p95".into()
                            } else {
                                legend(&by)
                            },
                        ),
                    );
                }
            }
            None => left_out(
                notes,
                B,
                "external API",
                "no counter is derived from `external_api` events",
            ),
        }
    }
    stats.append(&mut wide);
    Board {
        file: B,
        kind: "overview",
        title: "system overview".into(),
        description: "Requests, latency, errors, tools, tokens and LLM cost, from the metrics weir derives from the app's logs.".into(),
        tags: vec!["overview".into()],
        timezone: timezone(d),
        panels: stats,
    }
}

/// LLM cost today (the dashboard's day, which is the cost block's), per
/// day against the budget, and by model.
fn cost_panels(
    d: &Derived,
    notes: &mut Vec<String>,
    stats: &mut Vec<Panel>,
    wide: &mut Vec<Panel>,
) {
    const B: &str = "weir-system-overview";
    let Some(costs) = &d.costs else {
        left_out(
            notes,
            B,
            "LLM cost panels",
            "the metrics sink has no `costs:` block",
        );
        return;
    };
    let budget = costs.daily_budget_usd;
    if let Some(f) = d.named("llm_costs_total_usd") {
        let today = format!("sum(increase({}[$__range]))", f.name);
        let mut p = Panel::new(
            if budget.is_some() { "gauge" } else { "stat" },
            "LLM cost today",
            "currencyUSD",
        )
        .q(today, "today")
        .about(format!(
            "What LLM calls cost since midnight ({}), from the cost counter.",
            costs.timezone
        ));
        p.time_from = Some("now/d");
        if let Some(b) = budget {
            p = p.range(0.0, b);
            p.red_from = Some(b);
        }
        stats.push(p);
        if f.labels.iter().any(|l| l == "model") {
            wide.push(
                Panel::new("bargauge", "LLM cost by model (time range)", "currencyUSD").q(
                    format!("sum by (model) (increase({}[$__range]))", f.name),
                    "{{model}}",
                ),
            );
        }
    }
    if let Some(f) = d.named("llm_daily_costs_usd") {
        let mut p = Panel::new("bargauge", "LLM cost per day", "currencyUSD")
            .q(format!("sum by (date) ({})", f.name), "{{date}}")
            .about(format!(
                "weir's daily cost counters, the last {} days ({}).",
                costs.keep_days, costs.timezone
            ));
        if let Some(b) = budget {
            p = p.range(0.0, b);
            p.red_from = Some(b);
            p.description
                .push_str(&format!(" The bar's end is the daily budget, {b} USD."));
        }
        wide.push(p);
    }
    if let Some(f) = d.named("llm_daily_model_costs_usd") {
        wide.push(
            Panel::new("bargauge", "LLM cost per day and model", "currencyUSD")
                .q(
                    format!("sum by (date, model) ({})", f.name),
                    "{{date}} {{model}}",
                )
                .about(format!(
                    "Each day's cost split by model, the last {} days ({}).",
                    costs.keep_days, costs.timezone
                )),
        );
    }
    match (budget, d.named("llm_daily_budget_usd")) {
        (Some(_), Some(f)) => stats.push(
            Panel::new("stat", "Daily LLM budget", "currencyUSD")
                .q(format!("max({})", f.name), "budget"),
        ),
        _ => left_out(
            notes,
            B,
            "the daily budget",
            "the `costs:` block sets no `daily_budget_usd`",
        ),
    }
}

/// The plan's business figures, corrected.
pub fn business(d: &Derived, notes: &mut Vec<String>) -> Board {
    const B: &str = "weir-business";
    let mut stats = Vec::new();
    let mut wide = Vec::new();
    match d.find(
        Type::Counter,
        "workflow_node",
        "langgraph_workflow_executions_total",
        true,
    ) {
        Some(f) => match f.label("status", "status") {
            Some(st) => {
                let n = &f.name;
                let mut p = Panel::new("stat", "Workflow completion ratio", "percentunit")
                    .q(share(n, &st, "success", &[], "$__range"), "completed")
                    .range(0.0, 1.0)
                    .about("Workflow (LangGraph node) executions that succeeded, over the time range: the plan's conversation completion rate.");
                p.red_from = Some(0.9);
                p.red_below = true;
                stats.push(p);
                let node = f.label("node_name", "node_name");
                if let Some(node) = &node {
                    let mut p = Panel::new("bargauge", "Completion ratio by node", "percentunit")
                        .q(share(n, &st, "success", &[node], R), legend(&[node]))
                        .range(0.0, 1.0);
                    p.red_from = Some(0.9);
                    p.red_below = true;
                    wide.push(p);
                }
                let by: Vec<&str> = node
                    .iter()
                    .map(String::as_str)
                    .chain([st.as_str()])
                    .collect();
                wide.push(
                    Panel::new(
                        "timeseries",
                        "Workflow executions by node and status",
                        "short",
                    )
                    .q(rate(n, "", &by), legend(&by)),
                );
                if let Some(h) = d.find(
                    Type::Histogram,
                    "workflow_node",
                    "langgraph_workflow_duration_seconds",
                    false,
                ) {
                    let t = h.label("node_name", "node_name");
                    let by: Vec<&str> = t.iter().map(String::as_str).collect();
                    wide.push(Panel::new("timeseries", "Workflow duration p95", "s").q(
                        quantile(0.95, &h.name, &by),
                        if by.is_empty() {
                            "p95".into()
                        } else {
                            legend(&by)
                        },
                    ));
                }
            }
            None => left_out(
                notes,
                B,
                "workflow completion",
                &format!("`{}` has no label from the `status` field", f.name),
            ),
        },
        None => left_out(
            notes,
            B,
            "workflow completion",
            "no counter is derived from every `workflow_node` event",
        ),
    }
    match d.counter_with_label("user_id", "api_request") {
        Some((f, l)) => stats.push(active("Active users (last hour)", &f.name, &l, "users")),
        None => left_out(
            notes,
            B,
            "active users",
            "no derived counter has a label from the `user_id` field (the plan's query counted endpoints, not users)",
        ),
    }
    match d.counter_with_label("session_id", "sse_message") {
        Some((f, l)) => {
            stats.push(active(
                "Active sessions (last hour)",
                &f.name,
                &l,
                "sessions",
            ));
            wide.push(
                Panel::new("timeseries", "Active sessions (last hour)", "short")
                    .q(active_expr(&f.name, &l), "sessions"),
            );
        }
        None => left_out(
            notes,
            B,
            "active sessions",
            "no derived counter has a label from the `session_id` field",
        ),
    }
    match d.find(Type::Gauge, "sse_connect", "sse_connections_active", false) {
        Some(g) => stats.push(
            Panel::new("stat", "Open SSE connections", "short")
                .q(format!("sum({})", g.name), "open"),
        ),
        None => left_out(
            notes,
            B,
            "open SSE connections",
            "no gauge is derived from `sse_connect` events",
        ),
    }
    match d.find(Type::Counter, "sse_message", "sse_messages_total", true) {
        Some(f) => wide.push(
            Panel::new("timeseries", "SSE messages per second", "short")
                .q(rate(&f.name, "", &[]), "messages"),
        ),
        None => left_out(
            notes,
            B,
            "SSE messages",
            "no counter is derived from `sse_message` events",
        ),
    }
    if let Some(f) = d.find(
        Type::Counter,
        "sse_disconnect",
        "sse_disconnects_total",
        true,
    ) {
        let by: Vec<String> = f.label("reason", "reason").into_iter().collect();
        let by: Vec<&str> = by.iter().map(String::as_str).collect();
        wide.push(
            Panel::new("timeseries", "SSE disconnects by reason", "short").q(
                rate(&f.name, "", &by),
                if by.is_empty() {
                    "disconnects".into()
                } else {
                    legend(&by)
                },
            ),
        );
    }
    if let Some(h) = d.find(
        Type::Histogram,
        "sse_disconnect",
        "sse_connection_duration_seconds",
        false,
    ) {
        wide.push(
            Panel::new("timeseries", "SSE connection duration p50 / p95", "s")
                .q(quantile(0.5, &h.name, &[]), "p50")
                .q(quantile(0.95, &h.name, &[]), "p95"),
        );
    }
    memory(d, notes, &mut stats, &mut wide);
    stats.append(&mut wide);
    Board {
        file: B,
        kind: "business",
        title: "business".into(),
        description: "Workflow completion, active sessions, SSE streams and memory operations, from the metrics weir derives from the app's logs.".into(),
        tags: vec!["business".into()],
        timezone: timezone(d),
        panels: stats,
    }
}

/// How many distinct `label` values moved in the last hour.
fn active_expr(name: &str, label: &str) -> String {
    format!("count(sum by ({label}) (increase({name}[1h])) > 0)")
}

fn active(title: &str, name: &str, label: &str, legend: &str) -> Panel {
    Panel::new("stat", title, "short")
        .q(active_expr(name, label), legend)
        .about(format!(
            "Distinct `{label}` values of `{name}` that moved in the last hour."
        ))
}

fn memory(d: &Derived, notes: &mut Vec<String>, stats: &mut Vec<Panel>, wide: &mut Vec<Panel>) {
    let Some((f, st)) = d.memory() else {
        left_out(
            notes,
            "weir-business",
            "memory operation success",
            "no derived counter counts memory operations with a `status` label (the app's logs as generated have no memory events)",
        );
        return;
    };
    let mut p = Panel::new("stat", "Memory operation success ratio", "percentunit")
        .q(share(&f.name, &st, "success", &[], "$__range"), "success")
        .range(0.0, 1.0);
    p.red_from = Some(0.95);
    p.red_below = true;
    stats.push(p);
    if let Some(op) = f.label("operation", "operation") {
        wide.push(
            Panel::new(
                "bargauge",
                "Memory success ratio by operation",
                "percentunit",
            )
            .q(share(&f.name, &st, "success", &[&op], R), legend(&[&op]))
            .range(0.0, 1.0),
        );
    }
}

/// weir's own health, from its self-metrics.
pub fn pipeline(p: &Pipeline, d: &Derived, notes: &mut Vec<String>) -> Board {
    const B: &str = "weir-pipeline";
    let by = |m: &str, l: &[&str]| rate(m, "", l);
    let mut panels = vec![
        Panel::new("stat", "Lines read per second", "short")
            .q(by("weir_lines_read_total", &[]), "lines/s"),
        Panel::new("stat", "Events out per second", "short")
            .q(by("weir_events_out_total", &[]), "events/s"),
        Panel::new("stat", "Decode errors per second", "short")
            .q(by("weir_decode_errors_total", &[]), "errors/s"),
        Panel::new("timeseries", "Lines read per second by source", "short")
            .q(by("weir_lines_read_total", &["source"]), "{{source}}"),
        Panel::new("timeseries", "Bytes read per second by source", "Bps")
            .q(by("weir_bytes_read_total", &["source"]), "{{source}}"),
        Panel::new("timeseries", "Decode errors by source and reason", "short").q(
            by("weir_decode_errors_total", &["source", "reason"]),
            "{{source}} {{reason}}",
        ),
        Panel::new("timeseries", "Events out per second by sink", "short")
            .q(by("weir_events_out_total", &["sink"]), "{{sink}}"),
        Panel::new("timeseries", "Sink errors and retries", "short")
            .q(by("weir_sink_errors_total", &["sink"]), "{{sink}} errors")
            .q(by("weir_sink_retries_total", &["sink"]), "{{sink}} retries"),
        Panel::new("timeseries", "Dead letters and undelivered events", "short")
            .q(
                by("weir_dead_letter_events_total", &["sink", "reason"]),
                "{{sink}} dead letter {{reason}}",
            )
            .q(
                by("weir_sink_given_up_events_total", &["sink"]),
                "{{sink}} given up",
            )
            .q(
                by("weir_sink_undelivered_events_total", &["sink"]),
                "{{sink}} undelivered",
            ),
    ];
    // Sinks without a `buffer:` (their input channel alone) have no buffer gauges.
    if p.sinks
        .iter()
        .any(|s| !matches!(s.buffer, crate::buffer::Buffer::Channel))
    {
        panels.insert(
            3,
            Panel::new("stat", "Buffered events", "short").q("sum(weir_buffer_events)", "events"),
        );
        panels.push(
            Panel::new("timeseries", "Buffer fill (events)", "short")
                .q("sum by (sink) (weir_buffer_events)", "{{sink}}"),
        );
        panels.push(
            Panel::new("timeseries", "Buffer fill (bytes)", "bytes")
                .q("sum by (sink) (weir_buffer_bytes)", "{{sink}}"),
        );
    } else {
        left_out(
            notes,
            B,
            "buffer fill",
            "no sink has a `buffer:` (memory with bounds, or disk), so weir_buffer_events is not served",
        );
    }
    if p.transforms.is_empty() {
        left_out(
            notes,
            B,
            "events discarded by transforms",
            "the pipeline has no transforms",
        );
    } else {
        panels.push(
            Panel::new("timeseries", "Events discarded by transforms", "short").q(
                by("weir_events_discarded_total", &["transform"]),
                "{{transform}}",
            ),
        );
    }
    panels.push(
        Panel::new(
            "timeseries",
            "Derived metrics: value errors and overflow",
            "short",
        )
        .q(
            by("weir_metric_value_errors_total", &["metric"]),
            "{{metric}} value errors",
        )
        .q(
            by("weir_metric_overflow_samples_total", &["metric"]),
            "{{metric}} overflow",
        )
        .about("Matched events without a usable value, and samples past max_series."),
    );
    if d.costs.is_some() {
        panels.push(
            Panel::new("timeseries", "LLM events with unpriced models", "short")
                .q(by("weir_llm_unpriced_events_total", &["sink"]), "{{sink}}"),
        );
    }
    if d.remote_write {
        panels.push(
            Panel::new("timeseries", "Remote write requests by outcome", "short").q(
                by("weir_remote_write_requests_total", &["sink", "outcome"]),
                "{{sink}} {{outcome}}",
            ),
        );
    } else {
        left_out(
            notes,
            B,
            "remote write",
            "no metrics sink has `remote_write`",
        );
    }
    if p.sinks.iter().any(|s| s.kind.loki().is_some()) {
        panels.push(
            Panel::new("timeseries", "Loki requests by status", "short").q(
                by("weir_loki_requests_total", &["sink", "status"]),
                "{{sink}} {{status}}",
            ),
        );
    }
    if p.alerting.is_some() {
        panels.push(
            Panel::new("timeseries", "Rule group evaluations and failures", "short")
                .q(
                    by("weir_rule_group_evaluations_total", &["group"]),
                    "{{group}}",
                )
                .q(
                    by("weir_rule_evaluation_failures_total", &["group"]),
                    "{{group}} failures",
                ),
        );
    } else {
        left_out(
            notes,
            B,
            "rule evaluations",
            "the pipeline has no `alerting:` section",
        );
    }
    Board {
        file: B,
        kind: "pipeline",
        title: "pipeline health (weir)".into(),
        description: "weir's own self-metrics: what it reads, decodes, delivers, retries, dead-letters and buffers.".into(),
        tags: vec!["pipeline".into()],
        timezone: "utc".into(),
        panels,
    }
}

#[cfg(test)]
mod tests {
    use crate::alert::lint::catalog::SELF_METRICS;
    use crate::config::{EMBEDDED_DEFAULT, Pipeline};

    #[test]
    fn every_self_metric_charted_is_registered() {
        let p = Pipeline::from_text(EMBEDDED_DEFAULT, "<embedded feynman.yaml>", |_| None)
            .expect("the embedded pipeline loads");
        let d = super::Derived::of(&p).expect("a metrics sink");
        let board = super::pipeline(&p, &d, &mut Vec::new());
        let name = regex::Regex::new(r"weir_[a-z_]+").unwrap();
        let mut seen = 0;
        for panel in &board.panels {
            for (expr, _) in &panel.targets {
                for m in name.find_iter(expr) {
                    seen += 1;
                    assert!(
                        SELF_METRICS.iter().any(|(n, _, _)| *n == m.as_str()),
                        "{}: {} is not a self-metric",
                        panel.title,
                        m.as_str()
                    );
                }
            }
        }
        assert!(seen > 15);
    }
}
