//! Derived metrics as Prometheus and VictoriaMetrics see them: a real
//! Prometheus scrapes weir, a real VictoriaMetrics receives its remote
//! writes, and promtool checks the exposition. The expected values are
//! computed here from the lines fed in, independently of weir.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(60);

fn need(bin: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = format!("{dir}/{bin}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed: run scripts/test.sh, which installs the Debian packages the tests need"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query parameter.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A server process that is killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the plan's counters must be, computed from the fixture lines.
fn expected_from(text: &str) -> BTreeMap<String, f64> {
    let mut want = BTreeMap::new();
    for line in text.lines() {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            continue;
        };
        let s = |k: &str| match o.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        match s("event").as_str() {
            "api_request" => {
                let key = format!(
                    r#"fastapi_requests_total{{endpoint="{}",method="{}",status_code="{}"}}"#,
                    s("path"),
                    s("method"),
                    s("status_code")
                );
                *want.entry(key).or_insert(0.0) += 1.0;
            }
            // The middleware counts an unhandled exception as a 500.
            "api_error" => {
                let key = format!(
                    r#"fastapi_requests_total{{endpoint="{}",method="{}",status_code="500"}}"#,
                    s("path"),
                    s("method")
                );
                *want.entry(key).or_insert(0.0) += 1.0;
            }
            "llm_call" => {
                for t in ["prompt", "completion"] {
                    let key = format!(
                        r#"llm_tokens_used_total{{model="{}",type="{t}"}}"#,
                        s("model")
                    );
                    *want.entry(key).or_insert(0.0) += o[&format!("{t}_tokens")].as_f64().unwrap();
                }
            }
            "tool_call" => {
                let key = format!(
                    r#"agent_tool_calls_total{{status="{}",tool_name="{}"}}"#,
                    s("status"),
                    s("tool_name")
                );
                *want.entry(key).or_insert(0.0) += 1.0;
            }
            _ => {}
        }
    }
    want
}

/// `name{a="x",b="y"}` with labels sorted, from a Prometheus/VM JSON metric object.
fn series_key(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    let name = metric
        .get("__name__")
        .and_then(|n| n.as_str())
        .unwrap_or("");
    let labels: BTreeMap<&str, &str> = metric
        .iter()
        .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[test]
fn promtool_finds_no_errors_in_the_exposition() {
    let promtool = need("promtool");
    let s = Scratch::new();
    s.write(
        "logs/app.log",
        read(&repo().join("fixtures/feynman-sample.log")),
    );
    let feynman = repo().join("pipelines/feynman.yaml");
    let out = s
        .weir(&[
            "run",
            feynman.to_str().unwrap(),
            "--once",
            "--metrics-file",
            "m.prom",
        ])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(s.path("m.prom")).unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    // 0: clean; 3: lint only. The one lint is the plan's own name
    // `llm_costs_total_usd`, which weir keeps as written.
    assert!(
        matches!(check.status.code(), Some(0 | 3)),
        "promtool: {said}"
    );
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("llm_costs_total_usd") && line.contains("_total"),
            "unexpected promtool finding: {line}"
        );
    }
}

#[test]
fn prometheus_scrapes_what_was_fed_in() {
    let prometheus = need("prometheus");
    let s = Scratch::new();
    let fixture = read(&repo().join("fixtures/feynman-sample.log"));
    s.write("logs/app.log", &fixture);
    let weir_port = free_port();
    let prom_port = free_port();
    let feynman = repo().join("pipelines/feynman.yaml");
    let w = Running::start({
        let mut c = s.weir(&["run", feynman.to_str().unwrap()]);
        c.env("WEIR_API_ADDR", format!("127.0.0.1:{weir_port}"))
            .stdin(Stdio::null());
        c
    });
    let weir_addr = w.api_address();
    let lines = fixture.lines().count() as f64;
    wait_until(SECS, || {
        metric(
            &http_get(&weir_addr, "/metrics").2,
            r#"weir_lines_read_total{source="app_logs"}"#,
        ) == Some(lines)
    })
    .expect("weir read the fixture");

    let cfg = s.write(
        "prometheus.yml",
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: weir\n    static_configs: [{{targets: ['127.0.0.1:{weir_port}']}}]\n"),
    );
    let _prom = Server(
        Command::new(prometheus)
            .args([
                &format!("--config.file={}", cfg.display()),
                &format!("--storage.tsdb.path={}", s.path("tsdb").display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("127.0.0.1:{prom_port}");
    let query = |q: &str| -> BTreeMap<String, f64> {
        let Some((200, _, body)) = try_http_get(&prom, &format!("/api/v1/query?query={}", enc(q)))
        else {
            return BTreeMap::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    series_key(r["metric"].as_object().unwrap()),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    let want = expected_from(&fixture);
    let families =
        r#"{__name__=~"fastapi_requests_total|llm_tokens_used_total|agent_tool_calls_total"}"#;
    let mut got = BTreeMap::new();
    let ok = wait_until(SECS, || {
        got = query(families);
        got == want
    });
    assert!(
        ok.is_some(),
        "Prometheus has\n{got:#?}\nexpected\n{want:#?}"
    );
    // The scrape target is healthy and the histogram arrived whole.
    assert_eq!(query(r#"up{job="weir"}"#).values().next(), Some(&1.0));
    let api_requests = fixture
        .lines()
        .filter(|l| l.contains(r#""event": "api_request""#))
        .count() as f64;
    let hist = query("sum(fastapi_request_duration_seconds_count)");
    assert_eq!(hist.values().next(), Some(&api_requests), "{hist:?}");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(SECS).0, 0);
}

#[test]
fn remote_write_reaches_victoria_metrics() {
    let vm = need("victoria-metrics");
    let s = Scratch::new();
    let port = free_port();
    let _vm = Server(
        Command::new(vm)
            .args([
                &format!("-httpListenAddr=127.0.0.1:{port}"),
                &format!("-storageDataPath={}", s.path("vm").display()),
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let vm_addr = format!("127.0.0.1:{port}");
    wait_until(SECS, || {
        try_http_get(&vm_addr, "/health").is_some_and(|r| r.0 == 200)
    })
    .expect("victoria-metrics up");

    let fixture = read(&repo().join("fixtures/feynman-sample.log"));
    let mut text = read(&repo().join("pipelines/feynman.yaml"));
    // Into the metrics sink, which the alerting section follows.
    let at = text.find("\n# Alert rules").unwrap_or(text.len());
    text.insert_str(at, &format!("\n    remote_write:\n      url: http://{vm_addr}/api/v1/write\n      interval: 1h\n      labels: {{job: weir}}\n"));
    let p = pipeline(&s, "rw.yaml", &text);
    let out = run_with_input(s.weir(&["run", &p, "--once"]), fixture.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let want = expected_from(&fixture);
    let mut got = BTreeMap::new();
    let ok = wait_until(SECS, || {
        http_get(&vm_addr, "/internal/force_flush");
        let q = enc(
            r#"{__name__=~"fastapi_requests_total|llm_tokens_used_total|agent_tool_calls_total"}"#,
        );
        let (_, _, body) = http_get(&vm_addr, &format!("/api/v1/export?match[]={q}"));
        got = body
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    series_key(v["metric"].as_object().unwrap()),
                    v["values"]
                        .as_array()
                        .unwrap()
                        .last()
                        .unwrap()
                        .as_f64()
                        .unwrap(),
                )
            })
            .collect();
        got == want
    });
    assert!(
        ok.is_some(),
        "VictoriaMetrics has\n{got:#?}\nexpected\n{want:#?}"
    );
}

#[test]
fn a_flood_of_llm_models_stays_within_max_series() {
    const MODELS: usize = 50_000;
    const MAX: usize = 100;
    let s = Scratch::new();
    let mut lines = String::new();
    for i in 0..MODELS {
        lines.push_str(&format!(
            "{{\"timestamp\":\"2026-11-25T12:00:00Z\",\"event\":\"llm_call\",\"model\":\"m-{i}\",\"prompt_tokens\":3,\"completion_tokens\":4}}\n"
        ));
    }
    s.write("logs/app.log", &lines);
    let p = pipeline(
        &s,
        "costs.yaml",
        &format!(
            "api: {{address: '127.0.0.1:0'}}\nsources:\n  app:\n    type: file\n    include: ['{}/*.log']\n    read_from: beginning\n    decode: {{codec: json, timestamp: {{field: timestamp}}}}\nsinks:\n  m:\n    type: metrics\n    inputs: [app]\n    max_series: {MAX}\n    costs:\n      when: {{field: event, equals: llm_call}}\n",
            s.path("logs").display()
        ),
    );
    let out = s
        .weir(&["run", &p, "--once", "--metrics-file", "m.prom"])
        .stdin(Stdio::null())
        .output_within(RUN_LIMIT)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let prom = read(&s.path("m.prom"));
    let series = |name: &str| {
        prom.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect::<Vec<_>>()
    };
    let costs = series("llm_costs_total_usd");
    let tokens = series("llm_tokens_used_total");
    assert!(costs.len() <= MAX + 1, "{} cost series", costs.len());
    assert!(tokens.len() <= MAX + 1, "{} token series", tokens.len());
    assert!(
        costs.iter().any(|l| l
            .starts_with(r#"llm_costs_total_usd{model="__overflow__",provider="__overflow__"}"#)),
        "{costs:?}"
    );
    // The overflow series carries the rest: every token is still counted.
    let total: f64 = tokens
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, (MODELS * 7) as f64);
    // One cost series per model fits MAX models; a model takes two token series.
    assert_eq!(
        metric(
            &prom,
            r#"weir_metric_overflow_samples_total{metric="llm_costs_total_usd"}"#
        ),
        Some((MODELS - MAX) as f64)
    );
    assert_eq!(
        metric(
            &prom,
            r#"weir_metric_overflow_samples_total{metric="llm_tokens_used_total"}"#
        ),
        Some((2 * (MODELS - MAX / 2)) as f64)
    );
    assert_eq!(
        metric(&prom, r#"weir_llm_unpriced_events_total{sink="m"}"#),
        Some(MODELS as f64)
    );
    // A few models are named, then one summary; each full family is warned about once.
    assert_eq!(
        stderr.matches("has no price in the cost table").count(),
        10,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("more models have no price").count(),
        1,
        "{stderr}"
    );
    // Costs, tokens, and the day's cost by model.
    assert_eq!(
        stderr.matches("metric reached max_series").count(),
        3,
        "{stderr}"
    );
    let by_model = series("llm_daily_model_costs_usd");
    assert!(by_model.len() <= MAX + 1, "{} series", by_model.len());
}
