//! Alert rules evaluated live by `weir run`: a burst of 5xx answers in the
//! app's logs makes `HighErrorRate` go pending, fire, reach a real
//! Alertmanager with its rendered annotations, and resolve when the burst
//! ends; alert state survives a restart.

use std::io::Write as _;
use std::time::{Duration, Instant};

mod common;
use common::receivers::{Alertmanager, Seen, json_answer, receiver};
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

/// A chat robot receiver that checks DingTalk's signature.
fn dingtalk_robot(secret: &'static str) -> (weir_testkit::http_server::Server, Seen) {
    receiver(move |_, req| {
        let ts: i64 = req
            .param("timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let ok = req.param("access_token") == Some("TOKEN123")
            && req.param("sign") == Some(weir::alert::notify::dingtalk_sign(secret, ts).as_str());
        if ok {
            json_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#)
        } else {
            json_answer(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#)
        }
    })
}

fn bodies(seen: &Seen) -> Vec<serde_json::Value> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[test]
fn direct_notifiers_route_group_resolve_and_do_not_page_twice_across_a_restart() {
    use weir_testkit::smtp::{Security, SmtpOptions, SmtpServer};
    let (hook, hook_seen) = receiver(|_, _| json_answer(200, "{}"));
    let (ding, ding_seen) = dingtalk_robot("SECdt");
    let (wecom, wecom_seen) = receiver(|_, _| json_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#));
    let smtp = SmtpServer::start(SmtpOptions {
        security: Security::StartTls,
        auth: Some(("alerts".into(), "PWsmtp".into())),
        ..SmtpOptions::default()
    });
    let s = Scratch::new();
    s.write("rules.yml", RULES);
    s.write("ca.pem", smtp.ca_pem());
    s.write("dingtalk.secret", "SECdt\n");
    let quick = "group_wait: 1s, group_interval: 1s";
    let notify = format!(
        r#"  notify:
    - {{type: webhook, url: "http://{hook}/hook", {quick}}}
    - {{type: dingtalk, url: "http://{ding}/robot/send?access_token=TOKEN123", secret_file: dingtalk.secret, matchers: ['severity="critical"'], {quick}}}
    - {{type: wecom, url: "http://{wecom}/send?key=K", matchers: ['severity="warning"'], {quick}}}
    - type: email
      host: localhost
      port: {port}
      smtp_tls: starttls
      username: alerts
      password: "${{SMTP_PASSWORD}}"
      ca_file: ca.pem
      from: weir@example.com
      to: "oncall@example.com, lead@example.com"
      title: '【{{{{ .Status | toUpper }}}}】{{{{ .CommonLabels.alertname }}}}'
      {quick_block}
"#,
        hook = hook.addr(),
        ding = ding.addr(),
        wecom = wecom.addr(),
        port = smtp.port(),
        quick_block = "group_wait: 1s\n      group_interval: 1s",
    );
    let yaml = pipeline_yaml(None) + &notify;
    let p = pipeline(&s, "p.yaml", &yaml);
    append(&s, 200, 10);
    let start = |s: &Scratch| {
        let mut c = s.weir(&["run", &p]);
        c.env("SMTP_PASSWORD", "PWsmtp");
        Running::start(c)
    };
    let weir = start(&s);
    let addr = weir.api_address();

    let errors = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let path = s.path("logs/app.log");
        let errors = errors.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(90) {
                let status = if errors.load(std::sync::atomic::Ordering::SeqCst) {
                    500
                } else {
                    200
                };
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                for _ in 0..4 {
                    writeln!(f, "{}", request_line(status)).unwrap();
                }
                drop(f);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Firing: the webhook, DingTalk and email get it; WeCom's matcher
    // takes warnings only.
    wait_until(Duration::from_secs(20), || {
        !hook_seen.lock().unwrap().is_empty()
    })
    .unwrap_or_else(|| panic!("no webhook notification; stderr:\n{}", weir.stderr()));
    let first = &bodies(&hook_seen)[0];
    assert_eq!(first["status"], "firing");
    assert_eq!(first["receiver"], "webhook");
    assert_eq!(first["groupLabels"]["alertname"], "HighErrorRate");
    assert_eq!(first["alerts"][0]["labels"]["service"], "feynman");
    assert_eq!(
        first["alerts"][0]["annotations"]["summary"],
        "API错误率过高"
    );
    assert_eq!(first["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    wait_until(Duration::from_secs(10), || {
        !ding_seen.lock().unwrap().is_empty()
    })
    .expect("no DingTalk notification");
    let d = &bodies(&ding_seen)[0];
    assert_eq!(d["msgtype"], "markdown");
    assert!(
        d["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("API错误率过高"),
        "{d}"
    );
    let mails = smtp.wait_for(1, Duration::from_secs(15));
    assert_eq!(mails.len(), 1, "one email for the group");
    let m = &mails[0];
    assert!(m.tls, "sent after STARTTLS");
    assert_eq!(m.auth_user.as_deref(), Some("alerts"));
    assert_eq!(m.to, vec!["oncall@example.com", "lead@example.com"]);
    let part = weir_testkit::mail::Part::parse(&m.data);
    assert_eq!(
        part.header("Subject").as_deref(),
        Some("【FIRING】HighErrorRate")
    );
    assert!(part.text().contains("API错误率过高"), "{}", part.text());

    // A restart while it still fires: nothing is sent again (the
    // repeat_interval, 4h by default, has not passed).
    let hooks_before = hook_seen.lock().unwrap().len();
    let dings_before = ding_seen.lock().unwrap().len();
    weir.signal(libc::SIGTERM);
    assert_eq!(weir.wait(Duration::from_secs(20)).0, 0);
    let weir = start(&s);
    let addr2 = weir.api_address();
    wait_until(Duration::from_secs(15), || {
        alert_state(&addr2, "HighErrorRate").as_deref() == Some("firing")
    })
    .unwrap_or_else(|| panic!("not firing after the restart; stderr:\n{}", weir.stderr()));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        hook_seen.lock().unwrap().len(),
        hooks_before,
        "webhook paged twice"
    );
    assert_eq!(
        ding_seen.lock().unwrap().len(),
        dings_before,
        "DingTalk paged twice"
    );
    assert_eq!(smtp.messages().len(), 1, "emailed twice");

    // The errors stop: one resolved notification each.
    errors.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(Duration::from_secs(40), || {
        bodies(&hook_seen).iter().any(|b| b["status"] == "resolved")
    })
    .unwrap_or_else(|| panic!("no resolved notification; stderr:\n{}", weir.stderr()));
    let resolved = bodies(&hook_seen)
        .into_iter()
        .find(|b| b["status"] == "resolved")
        .unwrap();
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let mails = smtp.wait_for(2, Duration::from_secs(15));
    let subject = weir_testkit::mail::Part::parse(&mails[1].data).header("Subject");
    assert_eq!(subject.as_deref(), Some("【RESOLVED】HighErrorRate"));
    assert!(
        wecom_seen.lock().unwrap().is_empty(),
        "WeCom takes warnings only"
    );

    // No secret anywhere weir shows things.
    let (_, _, metrics) = http_get(&addr2, "/metrics");
    let (_, _, rules) = http_get(&addr2, "/api/v1/rules");
    for shown in [weir.stderr(), metrics, rules] {
        for secret in ["TOKEN123", "SECdt", "PWsmtp"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
    }
    let _ = addr;
    drop(weir);
    drop(writer);
}

#[test]
fn validate_reports_rule_and_notifier_problems_where_they_are_written() {
    let s = Scratch::new();
    s.write(
        "bad_rules.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: rate(x[5m] > 1\n",
    );
    let yaml = r#"sources:
  in: {type: stdin}
sinks:
  out: {type: blackhole, inputs: [in]}
alerting:
  rule_files: [bad_rules.yml, "missing/*.yml"]
  notify:
    - {type: webhook, url: "http://127.0.0.1:1/hook", matchers: ['severity=~"(']}
    - {type: dingtalk, url: "${DT_URL}", secret: "${DT_SECRET}", group_by: [alertname]}
    - {type: email, host: smtp.example.com, smtp_tls: none, username: u, password: "${PW}", from: a@example.com, to: b@example.com}
    - {type: pager, url: "http://x"}
"#;
    let p = pipeline(&s, "p.yaml", yaml);
    let mut cmd = s.weir(&["validate", &p]);
    cmd.env(
        "DT_URL",
        "https://oapi.dingtalk.com/robot/send?access_token=TOKENxyz",
    )
    .env("DT_SECRET", "SECxyz")
    .env("PW", "PWxyz");
    let out = cmd.output_within(RUN_LIMIT).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // The rule file's own position, as `weir validate rules.yml` gives it.
    assert!(err.contains("bad_rules.yml:5:"), "{err}");
    assert!(err.contains("`missing/*.yml` matches no file"), "{err}");
    // Each notifier's problem at its line.
    assert!(
        err.contains("p.yaml:8:") && err.contains("matcher"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:10:") && err.contains("in clear"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:11:") && err.contains("unknown notifier type `pager`"),
        "{err}"
    );
    for secret in ["TOKENxyz", "SECxyz", "PWxyz"] {
        assert!(!err.contains(secret), "{secret} shown:\n{err}");
    }
}

#[test]
fn shipped_alerting_pipeline_turns_on_what_the_environment_sets() {
    let s = Scratch::new();
    let p = repo().join("pipelines/alerting.yaml");
    let p = p.to_str().unwrap();
    let out = s.weir(&["validate", p]).output_within(RUN_LIMIT).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("30 rules, 0 of 6 notifiers on"), "{stdout}");
    let out = s
        .weir(&["validate", p])
        .env("ALERTMANAGER_URL", "http://127.0.0.1:9093")
        .env(
            "DINGTALK_WEBHOOK_URL",
            "https://oapi.dingtalk.com/robot/send?access_token=T",
        )
        .env("DINGTALK_SECRET", "S")
        .env("SMTP_HOST", "smtp.example.com")
        .env("SMTP_USER", "alerts")
        .env("SMTP_PASSWORD", "pw")
        .env("EMAIL_ALERTS", "oncall@example.com,lead@example.com")
        .output_within(RUN_LIMIT)
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 of 6 notifiers on"), "{stdout}");
}

fn promtool(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("/usr/bin/promtool")
        .args(args)
        .output_within(RUN_LIMIT)
        .expect("promtool is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// promtool, a client nobody here wrote, reads the running weir: the
/// raw expression evaluated at a rule's evaluation times equals what the
/// recording rule wrote then.
#[test]
fn promtool_queries_the_running_weir_and_agrees_with_its_rules() {
    let s = Scratch::new();
    s.write("rules.yml", RULES);
    let p = pipeline(&s, "p.yaml", &pipeline_yaml(None));
    append(&s, 200, 10);
    let weir = Running::start(s.weir(&["run", &p]));
    let addr = weir.api_address();
    let url = format!("http://{addr}");
    for _ in 0..40 {
        append(&s, 500, 3);
        append(&s, 200, 5);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The time of the newest recorded sample: an evaluation time.
    let v = promtool(&[
        "query",
        "instant",
        "-o",
        "json",
        &url,
        "timestamp(job:errors:rate10s)",
    ]);
    let t = v[0]["value"][1].as_str().unwrap().to_string();
    let raw = r#"sum(rate(fastapi_requests_total{status_code=~"5.."}[10s]))"#;
    let recorded = promtool(&[
        "query",
        "instant",
        "-o",
        "json",
        &format!("--time={t}"),
        &url,
        "job:errors:rate10s",
    ]);
    let computed = promtool(&[
        "query",
        "instant",
        "-o",
        "json",
        &format!("--time={t}"),
        &url,
        raw,
    ]);
    let r = recorded[0]["value"][1].as_str().unwrap();
    assert_eq!(r, computed[0]["value"][1].as_str().unwrap());
    assert!(r.parse::<f64>().unwrap() > 0.0, "{r}");

    // The same over a range whose steps are evaluation times.
    let end: f64 = t.parse().unwrap();
    let start = format!("{}", end - 3.0);
    let range = |expr: &str| {
        promtool(&[
            "query",
            "range",
            "-o",
            "json",
            &format!("--start={start}"),
            &format!("--end={t}"),
            "--step=1s",
            &url,
            expr,
        ])
    };
    let recorded = range("job:errors:rate10s");
    let computed = range(raw);
    let values = |v: &serde_json::Value| v[0]["values"].as_array().unwrap().clone();
    assert!(values(&recorded).len() >= 2, "{recorded}");
    assert_eq!(values(&recorded), values(&computed));
}
