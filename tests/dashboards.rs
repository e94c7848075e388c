//! `weir dashboards export`: the Grafana files are importable as they are
//! (the structure Grafana's "Export for sharing externally" writes), stable,
//! their queries valid PromQL for promtool, and every panel's query returns
//! data — from a real Prometheus scraping a live weir, and from weir's own
//! query API — when weir runs the shipped pipeline on the demo source.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const FILES: [&str; 3] = [
    "weir-system-overview.json",
    "weir-business.json",
    "weir-pipeline.json",
];

fn need(bin: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = format!("{dir}/{bin}");
        if Path::new(&p).exists() {
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

/// Runs `weir dashboards export ARGS -o DIR` in `s`; (stdout, stderr).
fn export(s: &Scratch, dir: &str, args: &[&str]) -> (String, String) {
    let mut all = vec!["dashboards", "export", "-o", dir];
    all.extend(args);
    let out = s.weir(&all).output_within(RUN_LIMIT).unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "export failed:\n{e}");
    (o, e)
}

fn load(s: &Scratch, rel: &str) -> Value {
    serde_json::from_str(&read(&s.path(rel))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every (panel title, refId, expr) of a dashboard.
fn queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["refId"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Checks the structure Grafana's import needs; `ds` is the uid every
/// panel and target must name.
fn check_structure(name: &str, d: &Value, ds: &str) {
    assert_eq!(d["schemaVersion"], 39, "{name}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
    let uid = d["uid"].as_str().unwrap();
    assert!(!uid.is_empty() && uid.len() <= 40, "{name}: uid {uid}");
    assert!(d["version"].is_u64(), "{name}");
    assert_eq!(d["time"]["from"], "now-6h", "{name}");
    assert_eq!(d["time"]["to"], "now", "{name}");
    assert!(d["refresh"].is_string(), "{name}");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource"), "{name}");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 4, "{name}: {} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(u64, u64, u64, u64, String)> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap().to_string();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{name}: id of {title}"
        );
        let kind = p["type"].as_str().unwrap();
        assert!(
            ["timeseries", "stat", "bargauge", "gauge"].contains(&kind),
            "{name}: {title}: {kind}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{name}: {title} at {g}");
        for (bx, by, bw, bh, other) in &boxes {
            let apart = x >= bx + bw || bx >= &(x + w) || y >= by + bh || by >= &(y + h);
            assert!(apart, "{name}: {title} overlaps {other}");
        }
        boxes.push((x, y, w, h, title.clone()));
        assert_eq!(p["datasource"]["type"], "prometheus", "{name}: {title}");
        assert_eq!(p["datasource"]["uid"], ds, "{name}: {title}");
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap();
        assert!(!unit.is_empty(), "{name}: {title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{name}: {title}");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{name}: {title}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
            assert!(t["legendFormat"].is_string(), "{name}: {title}");
            assert_eq!(t["datasource"]["uid"], ds, "{name}: {title}");
        }
    }
}

#[test]
fn exports_importable_stable_dashboards_from_the_shipped_pipeline() {
    let s = Scratch::new();
    let feynman = repo().join("pipelines/feynman.yaml");
    let f = feynman.to_str().unwrap();
    let (printed, said) = export(&s, "out", &["--pipeline", f]);
    let listed: Vec<&str> = printed.lines().collect();
    assert_eq!(listed.len(), 3, "{printed}");
    let mut uids = BTreeSet::new();
    for name in FILES {
        assert!(
            listed.iter().any(|l| l.ends_with(name)),
            "{name} not printed: {printed}"
        );
        let d = load(&s, &format!("out/{name}"));
        let inputs = d["__inputs"].as_array().expect("__inputs");
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0]["name"], "DS_PROMETHEUS");
        assert_eq!(inputs[0]["type"], "datasource");
        assert_eq!(inputs[0]["pluginId"], "prometheus");
        assert!(d["__requires"].as_array().is_some_and(|r| !r.is_empty()));
        check_structure(name, &d, "${DS_PROMETHEUS}");
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()));
    }
    // The plan's panels, corrected.
    let overview = read(&s.path("out/weir-system-overview.json"));
    for needle in [
        "histogram_quantile(0.95, sum by (le) (rate(fastapi_request_duration_seconds_bucket[$__rate_interval])))",
        "histogram_quantile(0.95, sum by (le, endpoint) (rate(fastapi_request_duration_seconds_bucket[$__rate_interval])))",
        "sum by (tool_name) (rate(agent_tool_calls_total{status=\\\"success\\\"}[$__rate_interval]))",
        "sum by (model, type) (rate(llm_tokens_used_total[$__rate_interval]))",
        "currencyUSD",
        "llm_daily_costs_usd",
    ] {
        assert!(overview.contains(needle), "overview lacks {needle}");
    }
    assert!(!overview.contains("histogram_quantile(0.5, fastapi"));
    let business = read(&s.path("out/weir-business.json"));
    assert!(business.contains("langgraph_workflow_executions_total{status=\\\"success\\\"}"));
    assert!(business.contains("count(sum by (session_id) (increase(sse_messages_total[1h])) > 0)"));
    let own = read(&s.path("out/weir-pipeline.json"));
    for m in [
        "weir_lines_read_total",
        "weir_decode_errors_total",
        "weir_events_out_total",
        "weir_sink_retries_total",
        "weir_dead_letter_events_total",
    ] {
        assert!(own.contains(m), "pipeline dashboard lacks {m}");
    }
    // feynman.yaml's sinks have no `buffer:`: no buffer gauges to chart.
    assert!(!own.contains("weir_buffer_events"));
    assert!(said.contains("buffer fill"), "{said}");
    // What feynman.yaml does not derive is named, with the reason.
    assert!(said.contains("memory operation"), "{said}");
    assert!(said.contains("active users"), "{said}");

    // Stable: a second export is byte for byte the same.
    export(&s, "again", &["--pipeline", f]);
    for name in FILES {
        assert_eq!(
            read(&s.path(&format!("out/{name}"))),
            read(&s.path(&format!("again/{name}"))),
            "{name} changed between two exports"
        );
    }
    // The default pipeline is the embedded feynman.yaml, the default directory ./dashboards.
    let out = s
        .weir(&["dashboards", "export"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        read(&s.path("dashboards/weir-business.json")),
        read(&s.path("out/weir-business.json"))
    );
}

/// The shipped pipeline with its metrics renamed, without `costs:` and
/// without alerting.
fn renamed_without_costs() -> String {
    let yaml = read(&repo().join("pipelines/feynman.yaml"));
    let cut = yaml
        .find("\n    # LLM tokens and cost")
        .expect("a costs block");
    yaml[..cut + 1]
        .replace("fastapi_requests_total", "http_requests_total")
        // Both rules of the request counter; the latency histogram keeps `endpoint`.
        .replacen("endpoint: \"{{ path }}\"", "route: \"{{ path }}\"", 2)
}

#[test]
fn panels_follow_the_pipeline_and_the_datasource_option() {
    let s = Scratch::new();
    let p = pipeline(&s, "renamed.yaml", &renamed_without_costs());
    let (_, said) = export(&s, "out", &["--pipeline", &p, "--datasource", "mine"]);
    assert!(said.contains("cost"), "{said}");
    assert!(said.contains("no `costs:` block"), "{said}");
    for name in FILES {
        let d = load(&s, &format!("out/{name}"));
        assert!(d.get("__inputs").is_none(), "{name} has __inputs");
        check_structure(name, &d, "mine");
        assert_eq!(d["templating"]["list"][0]["current"]["value"], "mine");
        assert!(d["uid"].as_str().unwrap().contains("renamed"));
    }
    let overview = read(&s.path("out/weir-system-overview.json"));
    assert!(
        !overview.contains("currencyUSD"),
        "a cost panel without costs"
    );
    assert!(!overview.contains("llm_"), "an LLM panel without costs");
    assert!(!overview.contains("fastapi_requests_total"));
    assert!(overview.contains("sum by (route) (rate(http_requests_total[$__rate_interval]))"));
    // Latency follows its own (unrenamed) histogram's label.
    assert!(
        overview.contains("sum by (le, endpoint) (rate(fastapi_request_duration_seconds_bucket")
    );

    // Errors say what to do.
    let out = s
        .weir(&["dashboards", "export", "--pipeline", "nope.yaml"])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pipeline"));
    let bare = pipeline(
        &s,
        "bare.yaml",
        "sources:\n  in: {type: stdin}\nsinks:\n  out: {type: console, inputs: [in]}\n",
    );
    let out = s
        .weir(&["dashboards", "export", "--pipeline", &bare])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing to chart: the pipeline has no metrics sink"),
        "{err}"
    );
}

/// Grafana's variables as a query sent by hand would have them.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "5m")
}

#[test]
fn every_query_is_valid_promql_for_promtool() {
    let promtool = need("promtool");
    let s = Scratch::new();
    export(&s, "out", &[]);
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for name in FILES {
        for (_, _, expr) in queries(&load(&s, &format!("out/{name}"))) {
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:query{n}\n        expr: {}\n",
                serde_json::to_string(&concrete(&expr)).unwrap()
            ));
        }
    }
    assert!(n > 30, "only {n} queries");
    let file = s.write("dashboards.rules.yml", &rules);
    let out = Command::new(promtool)
        .args(["check", "rules", file.to_str().unwrap()])
        .output_within(RUN_LIMIT)
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Queries the demo feed cannot give data for, by panel title and refId:
/// nothing is dead-lettered while every sink is healthy, and the
/// dead-letter counter is registered per reason with the first dead
/// letter, so its series do not exist (the given-up and undelivered
/// counters are registered at 0 and do). Everything else has data.
const NO_DATA_EXPECTED: &[(&str, &str)] = &[("Dead letters and undelivered events", "A")];

/// The shipped pipeline with its demo source always on and fast, and a
/// memory buffer on the file sink (so that the buffer gauges exist).
fn feynman_on_demo() -> String {
    let yaml = read(&repo().join("pipelines/feynman.yaml"));
    let demo = "    rate: 50                    # lines per second\n    when_missing: \"${WEIR_LOGS_DIR:-./logs}\"\n    when_interactive: true\n";
    assert!(yaml.contains(demo), "the demo source changed");
    let batch = "    batch: {max_bytes: 1MiB, timeout: 1s}\n";
    assert!(yaml.contains(batch), "the file sink changed");
    yaml.replacen(demo, "    rate: 400\n    seed: 11\n", 1)
        .replacen(
            batch,
            &format!("{batch}    buffer: {{type: memory, max_events: 100000}}\n"),
            1,
        )
}

/// The result of an instant query at `addr`, or `None` on an error.
fn instant(addr: &str, q: &str) -> Option<Vec<Value>> {
    let (status, _, body) = try_http_get(addr, &format!("/api/v1/query?query={}", enc(q)))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    if status != 200 {
        panic!("{addr} refused {q}: {body}");
    }
    v["data"]["result"].as_array().cloned()
}

/// Polls every query at `addr` until each has data; the ones still empty.
fn empty_after(addr: &str, qs: &[(String, String, String)], limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut pending: Vec<&(String, String, String)> = qs.iter().collect();
    loop {
        pending.retain(|(_, _, e)| instant(addr, &concrete(e)).is_none_or(|r| r.is_empty()));
        if pending.is_empty() || start.elapsed() > limit {
            return pending
                .iter()
                .map(|(t, r, e)| format!("{t} [{r}]: {e}"))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_panel_has_data_in_prometheus_and_in_weir() {
    let prometheus = need("prometheus");
    let s = Scratch::new();
    let p = pipeline(&s, "feynman.yaml", &feynman_on_demo());
    export(&s, "out", &["--pipeline", &p]);
    assert!(read(&s.path("out/weir-pipeline.json")).contains("sum by (sink) (weir_buffer_bytes)"));
    let mut qs = Vec::new();
    for name in FILES {
        qs.extend(queries(&load(&s, &format!("out/{name}"))));
    }
    let (expected, excluded): (Vec<_>, Vec<_>) = qs
        .into_iter()
        .partition(|(t, r, _)| !NO_DATA_EXPECTED.iter().any(|(xt, xr)| xt == t && xr == r));
    assert_eq!(excluded.len(), NO_DATA_EXPECTED.len(), "{excluded:?}");

    let weir_port = free_port();
    let w = Running::start({
        let mut c = s.weir(&["run", &p]);
        c.env("WEIR_API_ADDR", format!("127.0.0.1:{weir_port}"))
            .env("WEIR_EVAL_INTERVAL", "1s")
            .env(
                "WEIR_RULES",
                repo().join("pipelines/rules/alerting_rules.yml"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    });
    let weir_addr = w.api_address();
    let prom_port = free_port();
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
    let limit = Duration::from_secs(90);
    let in_prometheus = empty_after(&prom, &expected, limit);
    let in_weir = empty_after(&weir_addr, &expected, Duration::from_secs(20));
    assert!(
        in_prometheus.is_empty() && in_weir.is_empty(),
        "queries without data\nin Prometheus:\n{}\nin weir:\n{}\nweir's /metrics:\n{}",
        in_prometheus.join("\n"),
        in_weir.join("\n"),
        http_get(&weir_addr, "/metrics").2
    );
    // The excluded queries are well-formed there too (an empty result, no error).
    let mut answered = BTreeMap::new();
    for (t, r, e) in &excluded {
        answered.insert(format!("{t} {r}"), instant(&prom, &concrete(e)).is_some());
    }
    assert!(answered.values().all(|a| *a), "{answered:?}");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(60)).0, 0);
}
