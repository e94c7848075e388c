//! The live page (`GET /`) in a real browser, and `GET /api/summary`.
//!
//! weir runs pipelines/feynman.yaml (its metrics and its alerting, rules
//! evaluated every second, one extra rule that certainly fires, a memory
//! buffer on the file sink) with generated Feynman lines
//! (`weir generate --clean --truth`) fed to its stdin source. Then:
//!
//! - `/api/summary`'s `since_start` figures equal the generator's truth
//!   exactly (requests, conversations, tool calls, LLM cost, the day's cost);
//! - headless Chromium loads `/` (`--dump-dom`), and every number the page
//!   shows is checked: totals per source and sink against `/metrics`
//!   fetched at the same moment (the pipeline is quiet by then, and
//!   `/metrics` is read before and after the browser to show it); every
//!   figure with a `data-query` against the query API evaluated at the
//!   page's own evaluation time (`data-time`), so rates are compared
//!   exactly; the summary cards against `/api/summary?time=` of that time;
//!   the alerts and their rendered annotations against `/api/v1/alerts`;
//!   the charts hold series;
//! - a screenshot is saved in the test's temporary directory and copied to
//!   `target/live-page.png` (both paths are printed).
//!
//! A second test runs the pipeline without `alerting:`: `/api/summary`
//! answers 503 and the page falls back to `/metrics`, saying so.
//!
//! Chromium is `chromium` (Debian's; scripts/test.sh installs it) or
//! `$WEIR_CHROMIUM`. If it is missing or cannot start the tests fail,
//! unless `WEIR_SKIP_BROWSER=1`, which skips the browser parts only.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::browser::*;
use common::*;
use serde_json::Value as Json;

const LINES: usize = 30_000;

/// A rule that fires as soon as lines are read, with templated annotations.
const EXTRA_RULES: &str = r#"groups:
- name: live_page_test
  rules:
  - alert: WeirReadsLines
    expr: sum by (source) (weir_lines_read_total) > 0
    labels: {severity: info}
    annotations:
      summary: "weir reads {{ $labels.source }}"
      description: "{{ $labels.source }}: {{ $value }} lines read & counting"
"#;

// ---- the browser (tests/common/browser.rs) ----

/// Loads `url` and returns the DOM after the page's scripts ran.
fn dump_dom(s: &Scratch, url: &str) -> Dom {
    let html = run_chromium(s, url, &["--dump-dom".to_string()]);
    assert!(
        html.contains("data-state=\"ready\""),
        "the page never finished a refresh; DOM:\n{html}"
    );
    Dom::parse(&html)
}

// ---- expositions ----

/// Series text (`name{a="b",…}` as weir writes it) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of label `k` in a series text.
fn label<'a>(series: &'a str, k: &str) -> Option<&'a str> {
    let needle = format!("{k}=\"");
    let start = series.find(&needle)? + needle.len();
    let rest = &series[start..];
    Some(&rest[..rest.find('"')?])
}

fn name_of(series: &str) -> &str {
    series.split('{').next().unwrap()
}

/// Sum of the series of `name` by the value of label `by`.
fn sum_by(m: &BTreeMap<String, f64>, name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (series, v) in m {
        if name_of(series) == name {
            let k = label(series, by).unwrap_or("").to_string();
            *out.entry(k).or_insert(0.0) += v;
        }
    }
    out
}

fn sum_where(m: &BTreeMap<String, f64>, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    m.iter()
        .filter(|(s, _)| name_of(s) == name && keep(s))
        .map(|(_, v)| v)
        .sum()
}

/// Equal but for serde_json's float parsing, which without its
/// `float_roundtrip` feature may miss the nearest double by an ulp or so
/// (the browser parses JSON exactly).
fn same_json(got: Option<f64>, want: &Json, what: &str) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= 4.0 * f64::EPSILON * g.abs().max(w.abs()),
            "{what}: got {g}, want {w}"
        ),
        (g, _) => panic!("{what}: got {g:?}, want {want}"),
    }
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

// ---- weir ----

fn get_json(addr: &str, path: &str) -> (u16, Json) {
    let (status, _, body) = http_get(addr, path);
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn metrics(addr: &str) -> BTreeMap<String, f64> {
    samples(&http_get(addr, "/metrics").2)
}

/// pipelines/feynman.yaml with a memory buffer on the file sink; without
/// its `alerting:` section unless `alerting`.
fn feynman(alerting: bool) -> String {
    let yaml = read(&repo().join("pipelines/feynman.yaml"));
    let batch = "    batch: {max_bytes: 1MiB, timeout: 1s}\n";
    assert!(yaml.contains(batch));
    let yaml = yaml.replacen(
        batch,
        &format!("{batch}    buffer: {{type: memory, max_events: 100000}}\n"),
        1,
    );
    if alerting {
        yaml
    } else {
        let cut = yaml.find("\nalerting:").expect("an alerting section");
        yaml[..cut + 1].to_string()
    }
}

/// Generates `n` clean lines and their truth into the scratch dir.
fn generate(s: &Scratch, n: usize) -> (Vec<u8>, BTreeMap<String, f64>) {
    let out = s
        .weir(&[
            "generate",
            "--lines",
            &n.to_string(),
            "--clean",
            "--seed",
            "7",
            "-o",
            "lines.ndjson",
            "--truth",
            "truth.prom",
        ])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read(s.path("lines.ndjson")).unwrap(),
        samples(&read(&s.path("truth.prom"))),
    )
}

/// Starts weir on `pipeline` with stdin piped; rules every second.
fn start(s: &Scratch, pipeline: &str, rules: &str) -> (Running, std::process::ChildStdin, String) {
    let mut cmd = s.weir(&["run", pipeline]);
    cmd.env("WEIR_EVAL_INTERVAL", "1s")
        .env("WEIR_RULES", rules)
        .env("DAILY_COST_LIMIT_USD", "250")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut run = Running::start(cmd);
    let stdin = run.child.stdin.take().unwrap();
    let addr = run.api_address();
    (run, stdin, addr)
}

/// Waits until `n` lines from stdin are read and delivered to both sinks
/// and the buffer is empty, then until the figures stop moving.
fn wait_quiet(run: &Running, addr: &str, n: usize) -> BTreeMap<String, f64> {
    let n = n as f64;
    let done = |m: &BTreeMap<String, f64>| {
        m.get(r#"weir_lines_read_total{source="app_stdout"}"#) == Some(&n)
            && m.get(r#"weir_events_out_total{sink="local"}"#) == Some(&n)
            && m.get(r#"weir_events_out_total{sink="metrics"}"#) == Some(&n)
            && m.get(r#"weir_buffer_events{sink="local"}"#) == Some(&0.0)
    };
    wait_until(Duration::from_secs(120), || done(&metrics(addr))).unwrap_or_else(|| {
        panic!(
            "weir did not deliver {n} lines; /metrics:\n{}\nstderr:\n{}",
            http_get(addr, "/metrics").2,
            run.stderr()
        )
    });
    // Scrapes every second: let the history see the final values.
    std::thread::sleep(Duration::from_millis(2500));
    metrics(addr)
}

/// Checks every figure of the query API mode against `/metrics` (`m`),
/// the query API and `/api/summary` at the page's time.
fn check_live_dom(
    dom: &Dom,
    addr: &str,
    m: &BTreeMap<String, f64>,
    alerts: (Vec<Json>, Vec<Json>),
) {
    let body = dom.body();
    assert_eq!(body.attr("data-mode"), Some("query_api"), "{}", dom.html);
    let refreshes: u32 = body.attr("data-refreshes").unwrap().parse().unwrap();
    assert!(refreshes >= 1);
    let t = body.attr("data-time").expect("data-time").to_string();
    // A whole second, a second behind weir's clock (see page.js).
    assert!(t.parse::<u64>().is_ok(), "data-time {t}");

    // Totals per source and sink equal /metrics.
    let lines = sum_by(m, "weir_lines_read_total", "source");
    assert!(lines.contains_key("app_stdout"), "{lines:?}");
    let per_source = [
        ("lines", "weir_lines_read_total"),
        ("bytes", "weir_bytes_read_total"),
        ("decode_errors", "weir_decode_errors_total"),
        ("checkpoint_lag", "weir_checkpoint_lag_bytes"),
    ];
    for src in lines.keys() {
        for (field, metric) in per_source {
            let want = sum_by(m, metric, "source").get(src).copied();
            let el = dom.id(&format!("src-{src}-{field}"));
            assert_eq!(el.value(), want, "source {src} {field}");
        }
    }
    assert_eq!(dom.id("src-app_stdout-lines").value(), Some(LINES as f64));
    assert_eq!(dom.id("src-app_stdout-lines").text, "30,000");
    let per_sink = [
        ("events", "weir_events_out_total"),
        ("errors", "weir_sink_errors_total"),
        ("retries", "weir_sink_retries_total"),
        ("dead_letters", "weir_dead_letter_events_total"),
        ("buffer_events", "weir_buffer_events"),
        ("buffer_bytes", "weir_buffer_bytes"),
    ];
    let sinks = sum_by(m, "weir_events_out_total", "sink");
    assert_eq!(sinks.len(), 2, "{sinks:?}");
    for sink in sinks.keys() {
        for (field, metric) in per_sink {
            let want = sum_by(m, metric, "sink").get(sink).copied();
            let el = dom.id(&format!("sink-{sink}-{field}"));
            assert_eq!(el.value(), want, "sink {sink} {field}");
        }
    }
    assert_eq!(dom.id("sink-local-buffer_events").value(), Some(0.0));

    // Cost against /metrics.
    let days = sum_by(m, "llm_daily_costs_usd", "date");
    let (newest, cost) = days.iter().next_back().expect("a day with cost");
    let day = dom.id("cost-day");
    assert_eq!(day.attr("data-date"), Some(newest.as_str()));
    assert_eq!(day.value(), Some(*cost));
    assert_eq!(dom.id("cost-budget").value(), Some(250.0));
    // By model: the same day's figures.
    let by_model: BTreeMap<String, f64> = m
        .iter()
        .filter(|(s, _)| {
            name_of(s) == "llm_daily_model_costs_usd" && label(s, "date") == Some(newest.as_str())
        })
        .map(|(s, v)| (label(s, "model").unwrap().to_string(), *v))
        .collect();
    assert!(
        !by_model.is_empty(),
        "no llm_daily_model_costs_usd for {newest}"
    );
    let total: f64 = by_model.values().sum();
    assert!(
        (total - cost).abs() < 1e-9 * cost.max(1.0),
        "{by_model:?} vs {cost}"
    );
    for (model, v) in by_model {
        assert_eq!(
            dom.id(&format!("cost-model-{model}")).value(),
            Some(v),
            "{model}"
        );
    }

    // Every figure that names its query equals the query API's answer at
    // the page's time: rates too, exactly.
    let mut checked = 0;
    for el in dom.with_attr("data-query") {
        let id = el.attr("id").unwrap_or("");
        let (key, name) = if let Some(r) = id.strip_prefix("src-") {
            ("source", r.rsplit_once('-').unwrap().0.to_string())
        } else if let Some(r) = id.strip_prefix("sink-") {
            ("sink", r.rsplit_once('-').unwrap().0.to_string())
        } else if let Some(r) = id.strip_prefix("cost-model-") {
            ("model", r.to_string())
        } else if id == "cost-day" {
            ("date", el.attr("data-date").unwrap().to_string())
        } else if id == "cost-budget" {
            ("", String::new())
        } else {
            continue; // summary cards (below) and charts
        };
        let q = el.attr("data-query").unwrap();
        let (status, j) = get_json(addr, &format!("/api/v1/query?query={}&time={t}", enc(q)));
        assert_eq!(status, 200, "{q}: {j}");
        let result = j["data"]["result"].as_array().unwrap();
        let sample = result
            .iter()
            .find(|s| key.is_empty() || s["metric"][key] == name.as_str())
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap());
        assert_eq!(el.value(), sample, "#{id}: {q} at {t}");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} figures named their query");
    let rate = dom.id("src-app_stdout-lines_rate").value().unwrap();
    assert!(rate > 0.0, "lines/s {rate}");
    assert!(dom.id("sink-local-events_rate").value().unwrap() > 0.0);

    // The summary cards equal /api/summary at the same time.
    let (status, sum) = get_json(addr, &format!("/api/summary?time={t}"));
    assert_eq!(status, 200, "{sum}");
    same_json(t.parse::<f64>().ok(), &sum["time"], "time");
    let cards = [
        ("sum-rps", &sum["system_health"]["rps"]),
        (
            "sum-avg_latency_ms",
            &sum["system_health"]["avg_latency_ms"],
        ),
        ("sum-success_rate", &sum["system_health"]["success_rate"]),
        (
            "sum-conversations_1h",
            &sum["business_metrics"]["conversations_1h"],
        ),
        (
            "sum-cost_per_conversation",
            &sum["cost_metrics"]["cost_per_conversation"],
        ),
        (
            "sum-daily_token_cost",
            &sum["cost_metrics"]["daily_token_cost"],
        ),
        ("sum-requests", &sum["since_start"]["requests"]),
    ];
    for (id, want) in cards {
        same_json(dom.id(id).value(), want, id);
    }
    assert!(dom.id("sum-rps").value().unwrap() > 0.0);
    let status = sum["system_health"]["status"].as_str().unwrap();
    assert_eq!(dom.id("sum-status").text, status);
    let tools = sum["business_metrics"]["tool_usage_top5"]
        .as_array()
        .unwrap();
    assert_eq!(tools.len(), 5);
    for tool in tools {
        let name = tool["tool_name"].as_str().unwrap();
        let id = format!("tool-{name}-calls");
        same_json(dom.id(&id).value(), &tool["calls"], &id);
        let id = format!("tool-{name}-success_rate");
        same_json(dom.id(&id).value(), &tool["success_rate"], &id);
    }

    // Alerts with their rendered annotations, as /api/v1/alerts has them
    // before and after the page loaded (rules run on: an alert whose state
    // or description changed in between, or that went away and came back,
    // is not compared).
    let (before, after) = alerts;
    let key = |a: &Json| {
        (
            a["labels"].to_string(),
            a["state"].to_string(),
            a["annotations"].to_string(),
            a["activeAt"].to_string(),
        )
    };
    let stable: Vec<&Json> = before
        .iter()
        .filter(|a| after.iter().any(|b| key(a) == key(b)))
        .collect();
    if before.len() == after.len() && stable.len() == before.len() {
        assert_eq!(dom.id("alerts-count").value(), Some(before.len() as f64));
    }
    let descriptions: Vec<&str> = dom
        .with_attr("data-annotation")
        .filter(|e| e.attr("data-annotation") == Some("description"))
        .map(|e| e.text.as_str())
        .collect();
    for a in stable {
        let name = a["labels"]["alertname"].as_str().unwrap();
        assert!(
            dom.els
                .iter()
                .any(|e| e.attr("data-alertname") == Some(name)
                    && e.attr("data-state") == a["state"].as_str()),
            "alert {name} is not shown"
        );
        if let Some(d) = a["annotations"]["description"].as_str() {
            assert!(descriptions.contains(&d), "{d:?} not in {descriptions:?}");
        }
    }
    assert!(
        descriptions.contains(&"app_stdout: 30000 lines read & counting"),
        "{descriptions:?}"
    );

    // The charts of the last hour hold series.
    for (chart, least) in [
        ("lines", 1),
        ("requests", 3),
        ("latency", 2),
        ("tools", 5),
        ("tokens", 4),
    ] {
        let el = dom.id(&format!("chart-{chart}"));
        let n: usize = el.attr("data-series").unwrap().parse().unwrap();
        assert!(n >= least, "chart {chart}: {n} series");
    }
    assert!(dom.html.matches("<path class=\"line\"").count() >= 15);
}

#[test]
fn the_live_page_shows_what_metrics_and_the_summary_say() {
    let s = Scratch::new();
    let (lines, truth) = generate(&s, LINES);
    let extra = s.write("extra-rules.yml", EXTRA_RULES);
    let rules = format!("pipelines/rules/alerting_rules.yml,{}", extra.display());
    let pipeline = pipeline(&s, "feynman.yaml", &feynman(true));
    let (run, mut stdin, addr) = start(&s, &pipeline, &rules);

    // Fed over about five seconds, so rates have a slope.
    let started = Instant::now();
    let per_chunk = LINES / 20;
    let mut chunk = Vec::new();
    for (i, line) in lines.split_inclusive(|b| *b == b'\n').enumerate() {
        chunk.extend_from_slice(line);
        if (i + 1) % per_chunk == 0 {
            stdin.write_all(&chunk).unwrap();
            chunk.clear();
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    stdin.write_all(&chunk).unwrap();
    stdin.flush().unwrap();
    let m = wait_quiet(&run, &addr, LINES);
    println!(
        "{LINES} lines delivered {:.1} s after the first",
        started.elapsed().as_secs_f64()
    );

    // The summary's since-start figures are the generator's truth.
    let (status, sum) = get_json(&addr, "/api/summary");
    assert_eq!(status, 200, "{sum}");
    let ss = &sum["since_start"];
    let chat = |s: &str| matches!(label(s, "endpoint"), Some("/chat" | "/chat/stream"));
    let requests = sum_where(&truth, "fastapi_requests_total", |_| true);
    let conversations = sum_where(&truth, "fastapi_requests_total", chat);
    let tool_calls = sum_where(&truth, "agent_tool_calls_total", |_| true);
    let cost = sum_where(&truth, "llm_costs_total_usd", |_| true);
    assert!(requests > 1000.0 && conversations > 100.0 && tool_calls > 1000.0);
    assert_eq!(ss["requests"].as_f64(), Some(requests));
    assert_eq!(ss["conversations"].as_f64(), Some(conversations));
    assert_eq!(ss["tool_calls"].as_f64(), Some(tool_calls));
    close(ss["llm_cost_usd"].as_f64().unwrap(), cost, "llm_cost_usd");
    close(
        ss["cost_per_conversation"].as_f64().unwrap(),
        cost / conversations,
        "cost_per_conversation",
    );
    let days = sum_by(&truth, "llm_daily_costs_usd", "date");
    let (day, day_cost) = days.iter().next_back().unwrap();
    assert_eq!(sum["cost_metrics"]["date"], day.as_str());
    same_json(
        Some(*day_cost),
        &sum["cost_metrics"]["daily_token_cost"],
        "daily_token_cost",
    );
    assert_eq!(
        sum["cost_metrics"]["daily_budget_usd"].as_f64(),
        Some(250.0)
    );
    // The windowed figures: the history holds every request but those
    // before the first scrape that saw a series (`increase` extrapolates
    // by at most half a scrape interval), so the hour's conversations are
    // nearly all of them.
    let c1h = sum["business_metrics"]["conversations_1h"]
        .as_f64()
        .unwrap();
    assert!(
        c1h <= 1.25 * conversations && c1h >= 0.75 * conversations,
        "{c1h} vs {conversations}"
    );
    let rps = sum["system_health"]["rps"].as_f64().unwrap();
    assert!(rps > 0.0, "{sum}");
    let success = sum["system_health"]["success_rate"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&success), "{sum}");
    let want = if success > 0.95 {
        "healthy"
    } else {
        "degraded"
    };
    assert_eq!(sum["system_health"]["status"], want);
    assert_eq!(
        sum["business_metrics"]["tool_usage_top5"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    if skip_browser() {
        eprintln!("WEIR_SKIP_BROWSER=1: the browser checks of the live page are skipped");
        return;
    }
    let url = format!("http://{addr}/?refresh=2");
    let active = || {
        let (_, j) = get_json(&addr, "/api/v1/alerts");
        j["data"]["alerts"].as_array().unwrap().clone()
    };
    let before = metrics(&addr);
    let alerts_before = active();
    let dom = dump_dom(&s, &url);
    let alerts_after = active();
    let after = metrics(&addr);
    for (series, v) in &before {
        if [
            "weir_lines_read_total",
            "weir_events_out_total",
            "weir_bytes_read_total",
        ]
        .contains(&name_of(series))
        {
            assert_eq!(
                after.get(series),
                Some(v),
                "{series} moved while the page loaded"
            );
        }
    }
    check_live_dom(&dom, &addr, &m, (alerts_before, alerts_after));
    screenshot(&s, &url, "live-page.png");
    drop(stdin);
}

#[test]
fn without_alerting_the_page_falls_back_to_metrics() {
    let s = Scratch::new();
    let n = 2000;
    let (lines, _) = generate(&s, n);
    let pipeline = pipeline(&s, "feynman.yaml", &feynman(false));
    let (run, mut stdin, addr) = start(&s, &pipeline, "");
    stdin.write_all(&lines).unwrap();
    stdin.flush().unwrap();
    let m = wait_quiet(&run, &addr, n);

    let (status, j) = get_json(&addr, "/api/summary");
    assert_eq!(status, 503);
    assert_eq!(j["errorType"], "unavailable");
    assert!(j["error"].as_str().unwrap().contains("no alerting section"));
    let (status, ctype, html) = http_get(&addr, "/");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/html; charset=utf-8");
    assert!(html.contains("<title>weir — live</title>"));

    if skip_browser() {
        eprintln!("WEIR_SKIP_BROWSER=1: the browser checks of the live page are skipped");
        return;
    }
    let dom = dump_dom(&s, &format!("http://{addr}/?refresh=2"));
    assert_eq!(dom.body().attr("data-mode"), Some("metrics"));
    let notice = dom.id("notice");
    assert!(notice.attr("hidden").is_none());
    assert!(
        notice.text.contains("The query API is not available")
            && notice.text.contains("no alerting section"),
        "{}",
        notice.text
    );
    assert_eq!(dom.id("src-app_stdout-lines").value(), Some(n as f64));
    for (sink, v) in sum_by(&m, "weir_events_out_total", "sink") {
        assert_eq!(dom.id(&format!("sink-{sink}-events")).value(), Some(v));
    }
    for (src, v) in sum_by(&m, "weir_bytes_read_total", "source") {
        assert_eq!(dom.id(&format!("src-{src}-bytes")).value(), Some(v));
    }
    let days = sum_by(&m, "llm_daily_costs_usd", "date");
    let (_, cost) = days.iter().next_back().unwrap();
    assert_eq!(dom.id("cost-day").value(), Some(*cost));
    // Nothing claims to come from the query API.
    assert_eq!(dom.with_attr("data-query").count(), 0);
    assert!(dom.try_id("sum-unavailable").is_some());
    assert!(dom.try_id("alerts-unavailable").is_some());
    drop(stdin);
}
