//! Back-testing rules over old logs with known incidents: a burst of 5xx
//! answers, a token spike, a day over budget and a slow tool. Each
//! alert's pending, firing and resolved times are worked out by hand below
//! from Prometheus 2.42's semantics (scrapes and evaluations every 15 s at
//! multiples of 15 s, `rate` extrapolation, `offset`) and must come out
//! exactly.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

mod common;
use common::browser::*;
use common::*;

/// 2026-11-20T10:00:00Z, a multiple of 15 s.
const T0: i64 = 1_795_687_200;

const RULES: &str = r#"groups:
  - name: incidents
    interval: 15s
    rules:
      - alert: HighErrorRate
        expr: sum(rate(fastapi_requests_total{status_code="500"}[1m])) > 0.5
        for: 2m
        labels: {severity: critical}
        annotations: {summary: "错误率 {{ $value }}"}
      - alert: TokenSpike
        expr: sum(llm_tokens_used_total) - sum(llm_tokens_used_total offset 1m) > 100000
        labels: {severity: warning}
      - alert: DailyBudgetExceeded
        expr: llm_daily_budget_remaining_usd < 0
        labels: {severity: critical}
      - alert: SlowTool
        expr: |
          (sum(agent_tool_call_duration_seconds_sum) - sum(agent_tool_call_duration_seconds_sum offset 1m))
            / (sum(agent_tool_call_duration_seconds_count) - sum(agent_tool_call_duration_seconds_count offset 1m)) > 5
        for: 1m
        labels: {severity: warning}
"#;

fn ts(t: i64) -> String {
    jiff::Timestamp::from_second(T0 + t).unwrap().to_string()
}

/// The app's lines for the hour from T0, by time.
fn lines() -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for t in 0..3600 {
        out.push((t, format!(
            r#"{{"timestamp":"{}","event":"api_request","method":"GET","path":"/api/chat","status_code":200,"duration_ms":20}}"#,
            ts(t)
        )));
        // The 5xx burst: one a second for ten minutes from T0+1200 s.
        if (1200..1800).contains(&t) {
            out.push((t, format!(
                r#"{{"timestamp":"{}","level":"ERROR","event":"api_request","method":"GET","path":"/api/chat","status_code":500,"duration_ms":20}}"#,
                ts(t)
            )));
        }
        // LLM calls: 100 tokens a minute; the spike: 10,000 a second for a minute.
        let tokens = if t % 60 == 30 {
            Some(100)
        } else if (2400..2460).contains(&t) {
            Some(10_000)
        } else {
            None
        };
        if let Some(p) = tokens {
            out.push((t, format!(
                r#"{{"timestamp":"{}","event":"llm_call","model":"gpt-4","prompt_tokens":{p},"completion_tokens":0}}"#,
                ts(t)
            )));
        }
        // A tool call every 10 s; slow (9 s) for two minutes from T0+3000 s.
        if t % 10 == 5 {
            let ms = if (3000..3120).contains(&t) { 9000 } else { 100 };
            out.push((t, format!(
                r#"{{"timestamp":"{}","event":"tool_call","tool_name":"search","status":"success","duration_ms":{ms}}}"#,
                ts(t)
            )));
        }
    }
    out
}

/// Lines that are not JSON (the pipeline keeps them as they are).
const PLAIN: [&str; 2] = [
    "INFO:     Application startup complete.",
    "INFO:     127.0.0.1:50312 - \"GET /health HTTP/1.1\" 200 OK",
];

/// Writes the hour as two rotated generations (the older one modified
/// earlier), with a few lines a little out of order and two plain ones.
fn write_logs(s: &Scratch) {
    let mut all = lines();
    // Within the default 5 m window: these still count at their own time.
    all.swap(10, 20);
    let mid = all.len() / 2;
    let write = |name: &str, part: &[(i64, String)]| {
        let p = s.path(&format!("logs/{name}"));
        let mut f = std::fs::File::create(&p).unwrap();
        for (_, l) in part {
            writeln!(f, "{l}").unwrap();
        }
        p
    };
    let older = write("app.log.1", &all[..mid]);
    // Two of uvicorn's plain lines: kept, without a time of their own.
    let mut newer = all[mid..].to_vec();
    for (i, l) in [(5, PLAIN[0]), (500, PLAIN[1])] {
        newer.insert(i, (-1, l.to_string()));
    }
    write("app.log", &newer);
    let f = std::fs::File::options().write(true).open(older).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[derive(Debug, PartialEq)]
struct Fired {
    alertname: String,
    pending_since: i64,
    firing_from: i64,
    resolved_at: Option<i64>,
}

fn secs(v: &serde_json::Value) -> Option<i64> {
    let t: jiff::Timestamp = v.as_str()?.parse().unwrap();
    Some(t.as_second() - T0)
}

fn fired(s: &Scratch) -> (Vec<Fired>, Vec<serde_json::Value>) {
    let text = read(&s.path("data/backtest/alerts.ndjson"));
    let raw: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out: Vec<Fired> = raw
        .iter()
        .map(|v| Fired {
            alertname: v["alertname"].as_str().unwrap().to_string(),
            pending_since: secs(&v["pending_since"]).unwrap(),
            firing_from: secs(&v["firing_from"]).unwrap(),
            resolved_at: secs(&v["resolved_at"]),
        })
        .collect();
    out.sort_by_key(|f| (f.firing_from, f.alertname.clone()));
    (out, raw)
}

fn expected() -> Vec<Fired> {
    let f = |name: &str, p, fi, r| Fired {
        alertname: name.to_string(),
        pending_since: p,
        firing_from: fi,
        resolved_at: r,
    };
    vec![
        // rate over [S-60, S] first tops 0.5 at S = 1230 (31/60 with the
        // extrapolation to the counter's zero), fires 2 m later, and falls
        // to 29/60 at S = 1830.
        f("HighErrorRate", 1230, 1350, Some(1830)),
        // 40 calls · 0.003 + 3 · 0.3 USD passes the budget of 1 USD with the
        // line at 2402; the day's series stays below 0 to the end.
        f("DailyBudgetExceeded", 2415, 2415, None),
        // The spike's tokens in (S-60, S]: 160,100 at S = 2415; 100 at 2520.
        f("TokenSpike", 2415, 2415, Some(2520)),
        // The mean of the last minute's calls passes 5 s at 3045 (45.1/6),
        // fires a minute later, and is 27.3/6 at 3150.
        f("SlowTool", 3045, 3105, Some(3150)),
    ]
}

#[test]
fn weir_backtest_finds_each_incident_at_its_exact_time() {
    let s = Scratch::new();
    write_logs(&s);
    s.write("rules.yml", RULES);
    let feynman = repo().join("pipelines/feynman.yaml");
    let mut cmd = s.weir(&[
        "backtest",
        "rules.yml",
        "--logs",
        "logs/*.log*",
        "--pipeline",
        feynman.to_str().unwrap(),
    ]);
    cmd.env("DAILY_COST_LIMIT_USD", "1")
        .env("WEIR_DATA_DIR", "data");
    let out = cmd.output_within(RUN_LIMIT).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (got, raw) = fired(&s);
    assert_eq!(got, expected(), "stderr:\n{stderr}");

    // The table on stdout names each, the record carries what a page would.
    assert!(stdout.contains("4 alerts would have fired"), "{stdout}");
    assert!(stdout.contains("(still firing)"), "{stdout}");
    let high = raw
        .iter()
        .find(|v| v["alertname"] == "HighErrorRate")
        .unwrap();
    assert_eq!(high["labels"]["severity"], "critical");
    assert_eq!(high["peak_value"], 1.0);
    assert!(
        high["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("错误率 ")
    );
    let spike = raw.iter().find(|v| v["alertname"] == "TokenSpike").unwrap();
    // At S = 2460: the spike's lines in (2400, 2460] but 2430, which is the
    // minute's ordinary call: 58 · 10,000 + 100.
    assert_eq!(spike["peak_value"], 580_100.0);
    // No notifier was called, no log shipped, the real checkpoints untouched.
    assert!(!stderr.contains("notification"), "{stderr}");
    assert!(!s.path("data/out").exists());
}

#[test]
fn run_once_back_tests_the_same_way_and_from_to_narrow_it() {
    let s = Scratch::new();
    write_logs(&s);
    s.write("rules.yml", RULES);
    let feynman = repo().join("pipelines/feynman.yaml");
    let mut cmd = s.weir(&["run", feynman.to_str().unwrap(), "--once"]);
    cmd.env("DAILY_COST_LIMIT_USD", "1")
        .env("WEIR_RULES", "rules.yml")
        .stdin(std::process::Stdio::null());
    let out = cmd.output_within(RUN_LIMIT).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fired(&s).0, expected());

    // Only the first 40 minutes: the burst, nothing after.
    let mut cmd = s.weir(&[
        "backtest",
        "rules.yml",
        "--logs",
        "logs/*.log*",
        "--pipeline",
        feynman.to_str().unwrap(),
        "--to",
        &ts(2400),
    ]);
    cmd.env("DAILY_COST_LIMIT_USD", "1")
        .env("WEIR_DATA_DIR", "data");
    let out = cmd.output_within(RUN_LIMIT).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, _) = fired(&s);
    assert_eq!(got, expected()[..1]);
}

#[test]
fn the_report_shows_lines_errors_costs_and_each_alerts_timeline_in_a_browser() {
    let s = Scratch::new();
    write_logs(&s);
    s.write("rules.yml", RULES);
    let feynman = repo().join("pipelines/feynman.yaml");
    let mut cmd = s.weir(&[
        "backtest",
        "rules.yml",
        "--logs",
        "logs/*.log*",
        "--pipeline",
        feynman.to_str().unwrap(),
        "--report",
        "out/report.html",
    ]);
    cmd.env("DAILY_COST_LIMIT_USD", "1")
        .env("WEIR_DATA_DIR", "data");
    let out = cmd.output_within(RUN_LIMIT).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("report: out/report.html"), "{stderr}");
    let html = read(&s.path("out/report.html"));
    // One file: no script, nothing fetched.
    for outside in ["<script", "src=", "href=", "http://", "https://", "url("] {
        assert!(!html.contains(outside), "{outside} in the report");
    }

    // What the browser shows.
    if skip_browser() {
        return;
    }
    let url = format!("file://{}", s.path("out/report.html").display());
    let dom = Dom::parse(&run_chromium(&s, &url, &["--dump-dom".to_string()]));
    let all = lines();
    let value = |id: &str| dom.id(id).value().unwrap();
    assert_eq!(value("total-lines"), (all.len() + PLAIN.len()) as f64);
    assert_eq!(value("total-error-lines"), 600.0, "the burst's 5xx lines");
    assert_eq!(value("total-decode-errors"), PLAIN.len() as f64);
    assert_eq!(value("total-alerts"), 4.0);
    assert_eq!(value("logs-from"), (T0 * 1000) as f64);
    // The last scrape after the last line (T0+3599 s).
    assert_eq!(value("logs-to"), ((T0 + 3600) * 1000) as f64);

    // The bars hold every line once, and the error bars sit on the burst.
    let bars = |kind: &str| -> Vec<(i64, i64, f64)> {
        dom.els
            .iter()
            .filter(|e| e.attr("data-kind") == Some(kind))
            .map(|e| {
                let n = |k: &str| e.attr(k).unwrap().parse::<i64>().unwrap();
                (n("data-start"), n("data-end"), e.value().unwrap())
            })
            .collect()
    };
    let lines_bars = bars("lines");
    assert_eq!(lines_bars.len(), 60, "one-minute bars over the hour");
    assert_eq!(lines_bars[0].0, T0 * 1000);
    assert_eq!(
        lines_bars.iter().map(|b| b.2).sum::<f64>(),
        value("total-lines")
    );
    let errors = bars("error_lines");
    assert_eq!(errors.iter().map(|b| b.2).sum::<f64>(), 600.0);
    for (start, end, v) in errors.iter().filter(|b| b.2 > 0.0) {
        assert!(
            *start >= (T0 + 1200) * 1000 && *end <= (T0 + 1800) * 1000,
            "{v} error lines in [{start}, {end})"
        );
    }
    assert_eq!(errors.iter().filter(|b| b.2 == 60.0).count(), 10);

    // Cost per day and model: gpt-4 on the one day (60 calls of 100
    // tokens, one a minute, and the spike's 59 of 10,000 at 0.03 USD/1K).
    let date = jiff::Timestamp::from_second(T0)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let cell = dom
        .els
        .iter()
        .find(|e| {
            e.attr("data-date") == Some(date.as_str())
                && e.attr("data-model") == Some("gpt-4")
                && e.text.starts_with('$')
        })
        .unwrap_or_else(|| panic!("no cost cell for {date} gpt-4:\n{}", dom.html));
    let cost = cell.value().unwrap();
    assert!(
        (cost - (60.0 * 0.003 + 59.0 * 0.3)).abs() < 1e-9,
        "cost {cost}"
    );
    assert_eq!(value("total-cost"), cost);
    assert!(
        dom.html.contains("over budget"),
        "the day passed its budget of 1 USD"
    );

    // Each alert's timeline row and table row equal the hand-worked times.
    let rows: Vec<Fired> = dom
        .els
        .iter()
        .filter(|e| e.attr("class") == Some("alert"))
        .map(|e| {
            let t = |k: &str| {
                e.attr(k)
                    .and_then(|v| v.parse::<i64>().ok())
                    .map(|ms| ms / 1000 - T0)
            };
            Fired {
                alertname: e.attr("data-alertname").unwrap().to_string(),
                pending_since: t("data-pending-since").unwrap(),
                firing_from: t("data-firing-from").unwrap(),
                resolved_at: t("data-resolved-at"),
            }
        })
        .collect();
    let mut sorted = rows;
    sorted.sort_by_key(|f| (f.firing_from, f.alertname.clone()));
    assert_eq!(sorted, expected());
    let spans = dom
        .els
        .iter()
        .filter(|e| e.attr("class") == Some("firing") && e.attr("data-start").is_some())
        .count();
    assert_eq!(spans, 4, "one firing span per alert");
    let pending = dom
        .els
        .iter()
        .filter(|e| e.attr("class") == Some("pending") && e.attr("data-start").is_some())
        .count();
    assert_eq!(
        pending, 2,
        "HighErrorRate and SlowTool waited for their `for`"
    );
    assert!(
        dom.html.contains("错误率 "),
        "the rendered summary annotation"
    );
    screenshot(&s, &url, "backtest-report.png");
}

#[test]
fn a_replay_without_rules_reports_lines_and_costs_and_report_needs_once() {
    let s = Scratch::new();
    write_logs(&s);
    let p = pipeline(
        &s,
        "p.yaml",
        &format!(
            "data_dir: '{data}'
api: {{enabled: false}}
sources:
  app:
    type: file
    include: ['{logs}/*.log*']
    read_from: beginning
    decode: {{codec: json, on_error: keep, timestamp: {{field: timestamp}}}}
sinks:
  metrics:
    type: metrics
    inputs: [app]
    costs: {{when: {{field: event, equals: llm_call}}}}
",
            data = s.path("data").display(),
            logs = s.path("logs").display(),
        ),
    );
    let out = s
        .weir(&["run", &p, "--once", "--report", "r.html"])
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let html = read(&s.path("r.html"));
    let want = format!(
        r#"id="total-lines" data-value="{}""#,
        lines().len() + PLAIN.len()
    );
    assert!(html.contains(&want), "{want} not in:\n{html}");
    assert!(html.contains(r#"id="total-error-lines" data-value="600""#));
    assert!(html.contains(r#"id="alerts-empty""#), "no rules, no alerts");
    assert!(html.contains(r#"data-model="gpt-4""#), "costs by model");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no alert table without rules"
    );

    // --report is for replays.
    let out = s
        .weir(&["run", &p, "--report", "r.html"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));
}
