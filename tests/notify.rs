//! Notifiers against fake receivers that check each service's request
//! format: the webhook's JSON, Slack's 429 with `Retry-After`, DingTalk's
//! signature (verified by the receiver), and WeCom's 200-with-`errcode`
//! failure retried; errors never quote the secrets.

use std::time::{Duration, Instant};

use weir::alert::notify::send::{Kind, NotifyTarget, Secret, send};
use weir::alert::notify::{self, MsgType, Notification, NotifyAlert};
use weir::alert::promql::Labels;
use weir::alert::state::{Alert, AlertState};
use weir::config::units::Dur;
use weir::http::{Auth, RetryConfig, Target};
use weir::telemetry::Registry;
use weir_testkit::http_server::{self, Response};

mod common;
use common::receivers::{Alertmanager, Seen, json_answer, receiver};

fn target(kind: Kind, url: String, secret: Option<&str>, reg: &Registry) -> NotifyTarget {
    let t = Target::new(
        "notifier",
        url,
        Duration::from_secs(5),
        None,
        Auth::default(),
    )
    .unwrap();
    let retry = RetryConfig {
        initial_backoff: Dur(Duration::from_millis(50)),
        max_backoff: Dur(Duration::from_millis(200)),
        max_duration: Some(Dur(Duration::from_secs(3))),
    };
    NotifyTarget::new(kind, t, retry, secret.map(|s| Secret(s.into())), reg)
}

fn counted(reg: &Registry, notifier: &str, outcome: &str) -> f64 {
    let mut out = String::new();
    reg.render(&mut out);
    let series =
        format!("weir_notifications_total{{notifier=\"{notifier}\",outcome=\"{outcome}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn notification() -> Notification {
    let t0 = 1_738_310_400_000;
    Notification {
        receiver: "weir".into(),
        group_labels: Labels::from_pairs([("alertname", "HighErrorRate")]),
        alerts: vec![NotifyAlert {
            alert: Alert {
                state: AlertState::Firing,
                labels: Labels::from_pairs([
                    ("alertname", "HighErrorRate"),
                    ("severity", "critical"),
                ]),
                annotations: vec![("summary".into(), "错误率过高".into())],
                value: 0.25,
                active_at: t0,
                fired_at: Some(t0),
                resolved_at: None,
                last_sent_at: None,
                valid_until: None,
                keep_firing_since: None,
            },
            generator_url: notify::generator_url("http://weir:9300", "up == 0"),
        }],
        external_url: "http://weir:9300".into(),
    }
}

#[tokio::test]
async fn webhook_receives_alertmanager_json() {
    let (server, seen) = receiver(|_, _| Response::empty(200));
    let reg = Registry::default();
    let to = target(
        Kind::Webhook,
        format!("http://{}/hook", server.addr()),
        None,
        &reg,
    );
    let n = notification();
    let body = notify::webhook_body(&n);
    send(&to, &body).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/hook");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["alerts"][0]["annotations"]["summary"], "错误率过高");
    assert_eq!(v["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(counted(&reg, "webhook", "success"), 1.0);
}

#[tokio::test]
async fn slack_429_waits_for_retry_after() {
    let (server, seen) = receiver(|n, _| {
        if n == 0 {
            Response {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: b"rate_limited".to_vec(),
                close: false,
            }
        } else {
            Response {
                status: 200,
                headers: vec![],
                body: b"ok".to_vec(),
                close: false,
            }
        }
    });
    let reg = Registry::default();
    let to = target(
        Kind::Slack,
        format!("http://{}/services/T/B/X", server.addr()),
        None,
        &reg,
    );
    let text = notify::default_text(&notification());
    let started = Instant::now();
    send(&to, &notify::slack_body(&text)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let v: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert!(v["text"].as_str().unwrap().contains("错误率过高"));
    assert_eq!(counted(&reg, "slack", "retry"), 1.0);
    assert_eq!(counted(&reg, "slack", "success"), 1.0);
}

#[tokio::test]
async fn slack_404_is_not_retried() {
    let (server, seen) = receiver(|_, _| json_answer(404, "channel_not_found"));
    let reg = Registry::default();
    let to = target(
        Kind::Slack,
        format!("http://{}/services/x", server.addr()),
        None,
        &reg,
    );
    let e = send(&to, &notify::slack_body("x")).await.unwrap_err();
    assert!(e.contains("404") && e.contains("channel_not_found"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(counted(&reg, "slack", "failure"), 1.0);
}

/// A DingTalk robot with secret `secret`: checks the token, the timestamp
/// (within an hour) and the signature, as DingTalk does.
fn dingtalk(secret: &'static str) -> (http_server::Server, Seen) {
    receiver(move |_, req| {
        let ts: i64 = req
            .param("timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let now = jiff::Timestamp::now().as_millisecond();
        let ok = req.param("access_token") == Some("TOKEN123")
            && (now - ts).abs() < 3_600_000
            && req.param("sign") == Some(notify::dingtalk_sign(secret, ts).as_str());
        if ok {
            json_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#)
        } else {
            json_answer(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#)
        }
    })
}

#[tokio::test]
async fn dingtalk_signature_verified_by_receiver() {
    let (server, seen) = dingtalk("SECright");
    let reg = Registry::default();
    let url = format!("http://{}/robot/send?access_token=TOKEN123", server.addr());
    let n = notification();
    let body = notify::dingtalk_body(
        MsgType::Markdown,
        &notify::default_title(&n),
        &notify::default_markdown(&n),
    );
    let to = target(Kind::DingTalk, url.clone(), Some("SECright"), &reg);
    send(&to, &body).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(v["msgtype"], "markdown");
        assert!(
            v["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains("错误率过高")
        );
    }
    assert_eq!(counted(&reg, "dingtalk", "success"), 1.0);

    // A wrong secret: 200 with errcode 310000 is a failure, retried until
    // max_duration; the error names neither the secret nor the token.
    let bad = target(Kind::DingTalk, url, Some("SECwrong"), &reg);
    let e = send(&bad, &body).await.unwrap_err();
    assert!(e.contains("310000"), "{e}");
    assert!(!e.contains("SECwrong") && !e.contains("TOKEN123"), "{e}");
    assert!(seen.lock().unwrap().len() > 2);
    assert_eq!(counted(&reg, "dingtalk", "failure"), 1.0);
    assert!(counted(&reg, "dingtalk", "retry") >= 1.0);
}

#[tokio::test]
async fn wecom_errcode_is_retried() {
    let (server, seen) = receiver(|n, _| {
        if n == 0 {
            json_answer(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#)
        } else {
            json_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#)
        }
    });
    let reg = Registry::default();
    let url = format!("http://{}/cgi-bin/webhook/send?key=KEY", server.addr());
    let to = target(Kind::WeCom, url, None, &reg);
    let long = "错误率过高 ".repeat(500);
    send(&to, &notify::wecom_body(MsgType::Text, &long))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].param("key"), Some("KEY"));
    let v: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    let content = v["text"]["content"].as_str().unwrap();
    assert!(content.len() <= notify::WECOM_TEXT_MAX);
    assert!(content.starts_with("错误率过高") && content.ends_with('…'));
    assert_eq!(counted(&reg, "wecom", "retry"), 1.0);
    assert_eq!(counted(&reg, "wecom", "success"), 1.0);
}

/// The alerts a real Alertmanager holds whose `alertname` is `name`.
async fn am_alerts(addr: &str, name: &str) -> Option<Vec<serde_json::Value>> {
    let r = reqwest::get(format!("http://{addr}/api/v2/alerts"))
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .cloned()
            .collect(),
    )
}

#[tokio::test]
async fn real_alertmanager_receives_and_resolves() {
    let am = Alertmanager::start();
    let addr = am.addr.clone();
    let ready = Instant::now();
    let reg = Registry::default();
    let to = target(
        Kind::Alertmanager,
        format!("http://{addr}/api/v2/alerts"),
        None,
        &reg,
    );
    let now = jiff::Timestamp::now().as_millisecond();
    let mut n = notification();
    let a = &mut n.alerts[0].alert;
    a.fired_at = Some(now - 60_000);
    a.valid_until = Some(now + 4 * 60_000);
    send(&to, &notify::alertmanager_body(&n.alerts, now, 60_000))
        .await
        .unwrap();
    let got = loop {
        let got = am_alerts(&addr, "HighErrorRate").await.unwrap_or_default();
        if !got.is_empty() {
            break got;
        }
        assert!(ready.elapsed() < Duration::from_secs(30), "alert not found");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["labels"]["severity"], "critical");
    assert_eq!(got[0]["annotations"]["summary"], "错误率过高");
    assert_eq!(got[0]["status"]["state"], "active");
    assert!(
        got[0]["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://weir:9300/graph?g0.expr=")
    );

    // The resolution: `endsAt` in the past; Alertmanager stops listing it.
    n.alerts[0].alert.resolved_at = Some(jiff::Timestamp::now().as_millisecond() - 1);
    let now = jiff::Timestamp::now().as_millisecond();
    send(&to, &notify::alertmanager_body(&n.alerts, now, 60_000))
        .await
        .unwrap();
    let resolved = Instant::now();
    while !am_alerts(&addr, "HighErrorRate")
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            resolved.elapsed() < Duration::from_secs(30),
            "alert not resolved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted(&reg, "alertmanager", "success"), 2.0);
}

#[tokio::test]
async fn several_alertmanagers_one_is_enough() {
    let (good, good_seen) = receiver(|_, _| Response::empty(200));
    let (bad, bad_seen) = receiver(|_, _| json_answer(400, "invalid"));
    let reg = Registry::default();
    let targets = [
        target(
            Kind::Alertmanager,
            format!("http://{}/api/v2/alerts", bad.addr()),
            None,
            &reg,
        ),
        target(
            Kind::Alertmanager,
            format!("http://{}/api/v2/alerts", good.addr()),
            None,
            &reg,
        ),
    ];
    let n = notification();
    let body = notify::alertmanager_body(&n.alerts, 1_738_310_400_000, 60_000);
    weir::alert::notify::send::send_all(&targets, &body)
        .await
        .unwrap();
    assert_eq!(good_seen.lock().unwrap().len(), 1);
    assert_eq!(bad_seen.lock().unwrap().len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&good_seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(v[0]["endsAt"], "2025-01-31T08:04:00.000Z");
    assert_eq!(counted(&reg, "alertmanager", "success"), 1.0);
    assert_eq!(counted(&reg, "alertmanager", "failure"), 1.0);

    let e = weir::alert::notify::send::send_all(&targets[..1], &body)
        .await
        .unwrap_err();
    assert!(e.contains("400"), "{e}");
}
