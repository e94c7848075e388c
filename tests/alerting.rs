//! Alert rules evaluated live by `weir run`: a burst of 5xx answers in the
//! app's logs makes `HighErrorRate` go pending, fire, reach a real
//! Alertmanager with its rendered annotations, and resolve when the burst
//! ends; alert state survives a restart.

use std::io::Write as _;
use std::time::{Duration, Instant};

mod common;
use common::receivers::Alertmanager;
use common::*;

/// The plan's HighErrorRate, with windows short enough for a test.
const RULES: &str = r#"groups:
  - name: feynman_system_alerts
    rules:
      - record: job:errors:rate10s
        expr: sum(rate(fastapi_requests_total{status_code=~"5.."}[10s]))
      - alert: HighErrorRate
        expr: job:errors:rate10s > 1
        for: 3s
        labels:
          severity: critical
        annotations:
          summary: "API错误率过高"
          description: "10秒内API错误率 {{ $value | printf \"%.1f\" }}/s，超过1/s阈值"
"#;

fn pipeline_yaml(am: Option<&str>) -> String {
    let notify = match am {
        Some(addr) => format!("  notify:\n    - {{type: alertmanager, url: \"http://{addr}\"}}\n"),
        None => String::new(),
    };
    format!(
        r#"data_dir: data
api: {{address: "127.0.0.1:0"}}
sources:
  app:
    type: file
    include: ["logs/*.log"]
    read_from: beginning
    glob_interval: 100ms
sinks:
  metrics:
    type: metrics
    inputs: [app]
    rules:
      - name: fastapi_requests_total
        type: counter
        when: {{field: event, equals: api_request}}
        labels: {{method: "{{{{ method }}}}", endpoint: "{{{{ path }}}}", status_code: "{{{{ status_code }}}}"}}
alerting:
  rule_files: [rules.yml]
  evaluation_interval: 500ms
  external_labels: {{service: feynman}}
  external_url: http://weir.example:9464
  resend_delay: 1s
{notify}"#
    )
}

fn request_line(status: u16) -> String {
    format!(
        r#"{{"timestamp":"2026-12-01T08:00:00+00:00","level":"INFO","event":"api_request","method":"POST","path":"/api/chat","status_code":{status},"duration_ms":12.5}}"#
    )
}

/// Appends `n` request lines with `status` to logs/app.log.
fn append(s: &Scratch, status: u16, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.path("logs/app.log"))
        .unwrap();
    for _ in 0..n {
        writeln!(f, "{}", request_line(status)).unwrap();
    }
}

/// The ALERTS series of `alertname` on /metrics, e.g.
/// `ALERTS{alertname="HighErrorRate",alertstate="firing",severity="critical"}`.
fn alert_state(addr: &str, alertname: &str) -> Option<String> {
    let (_, _, body) = try_http_get(addr, "/metrics")?;
    body.lines()
        .filter(|l| l.starts_with("ALERTS{"))
        .find(|l| l.contains(&format!("alertname=\"{alertname}\"")))
        .and_then(|l| l.split("alertstate=\"").nth(1))
        .map(|r| r[..r.find('"').unwrap()].to_string())
}

fn for_state(addr: &str) -> Option<f64> {
    let (_, _, body) = try_http_get(addr, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with("ALERTS_FOR_STATE{alertname=\"HighErrorRate\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn high_error_rate_pends_fires_notifies_and_resolves() {
    let am = Alertmanager::start();
    let s = Scratch::new();
    s.write("rules.yml", RULES);
    let p = pipeline(&s, "p.yaml", &pipeline_yaml(Some(&am.addr)));
    append(&s, 200, 10);
    let weir = Running::start(s.weir(&["run", &p]));
    let addr = weir.api_address();
    weir.wait_for_log("evaluating alert rules", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(alert_state(&addr, "HighErrorRate"), None, "no 5xx yet");

    // The burst: pending first (for: 3s), then firing.
    let writer = {
        let path = s.path("logs/app.log");
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(12) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                for _ in 0..4 {
                    writeln!(f, "{}", request_line(500)).unwrap();
                    writeln!(f, "{}", request_line(200)).unwrap();
                }
                drop(f);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    wait_until(Duration::from_secs(10), || {
        alert_state(&addr, "HighErrorRate").as_deref() == Some("pending")
    })
    .unwrap_or_else(|| panic!("never pending; stderr:\n{}", weir.stderr()));
    let active_at = for_state(&addr).expect("ALERTS_FOR_STATE while pending");
    wait_until(Duration::from_secs(10), || {
        alert_state(&addr, "HighErrorRate").as_deref() == Some("firing")
    })
    .expect("never firing");
    assert_eq!(
        for_state(&addr),
        Some(active_at),
        "active_at stays while firing"
    );

    // Alertmanager got it, with labels and rendered annotations.
    let mut got = Vec::new();
    wait_until(Duration::from_secs(10), || {
        got = am.alerts("HighErrorRate").unwrap_or_default();
        !got.is_empty()
    })
    .expect("the alert never reached Alertmanager");
    let a = &got[0];
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["labels"]["service"], "feynman",
        "external labels are sent"
    );
    assert_eq!(a["annotations"]["summary"], "API错误率过高");
    let desc = a["annotations"]["description"].as_str().unwrap();
    assert!(
        desc.starts_with("10秒内API错误率 ") && desc.ends_with("/s，超过1/s阈值"),
        "{desc}"
    );
    assert!(
        a["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://weir.example:9464/graph?g0.expr=job%3Aerrors%3Arate10s"),
        "{}",
        a["generatorURL"]
    );

    // The burst ends: the rate falls below the threshold and the alert is
    // resolved, in weir and in Alertmanager.
    writer.join().unwrap();
    wait_until(Duration::from_secs(30), || {
        alert_state(&addr, "HighErrorRate").is_none()
    })
    .expect("never resolved in weir");
    wait_until(Duration::from_secs(15), || {
        am.alerts("HighErrorRate").is_some_and(|v| v.is_empty())
    })
    .expect("Alertmanager still lists the alert after its resolution");
    let (_, _, m) = http_get(&addr, "/metrics");
    assert!(
        metric(
            &m,
            "weir_notifications_total{notifier=\"alertmanager\",outcome=\"success\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        metric(
            &m,
            "weir_rule_evaluation_failures_total{group=\"feynman_system_alerts\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn a_restart_keeps_the_for_timer() {
    let s = Scratch::new();
    // Fires only after 6 s of pending, so a restart half-way must not
    // start the wait again.
    s.write(
        "rules.yml",
        RULES.replace("for: 3s", "for: 6s").replace("> 1", "> 0"),
    );
    let p = pipeline(&s, "p.yaml", &pipeline_yaml(None));
    append(&s, 500, 5);
    let weir = Running::start(s.weir(&["run", &p]));
    let addr = weir.api_address();
    // A counter needs two samples to have a rate: add a few more lines.
    std::thread::sleep(Duration::from_secs(1));
    append(&s, 500, 5);
    wait_until(Duration::from_secs(10), || {
        alert_state(&addr, "HighErrorRate").as_deref() == Some("pending")
    })
    .unwrap_or_else(|| panic!("never pending; stderr:\n{}", weir.stderr()));
    let active_at = for_state(&addr).unwrap();
    weir.signal(libc::SIGTERM);
    let (code, log) = weir.wait(Duration::from_secs(20));
    assert_eq!(code, 0, "{log}");
    let state = read(&s.path("data/alerts/state.json"));
    assert!(state.contains("\"pending\""), "{state}");

    // After the restart the counter starts from the file's beginning again
    // (the checkpoint is past it, so no new lines): keep errors coming.
    let weir = Running::start(s.weir(&["run", &p]));
    let addr = weir.api_address();
    let keep = std::thread::spawn({
        let path = s.path("logs/app.log");
        move || {
            for _ in 0..100 {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                writeln!(f, "{}", request_line(500)).unwrap();
                drop(f);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    wait_until(Duration::from_secs(15), || {
        alert_state(&addr, "HighErrorRate").is_some()
    })
    .unwrap_or_else(|| panic!("alert gone after restart; stderr:\n{}", weir.stderr()));
    assert_eq!(
        for_state(&addr),
        Some(active_at),
        "the restored alert keeps the time it became active"
    );
    assert!(
        weir.stderr()
            .contains("alert state restored from the last run")
    );
    wait_until(Duration::from_secs(15), || {
        alert_state(&addr, "HighErrorRate").as_deref() == Some("firing")
    })
    .expect("never firing after the restart");
    keep.join().unwrap();
}
