use super::*;
use crate::alert::state::AlertState;

/// 2025-01-31T08:00:00Z.
const T0: i64 = 1_738_310_400_000;

fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
    Alert {
        state: AlertState::Firing,
        labels: Labels::from_pairs(labels.iter().copied()),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: 0.25,
        active_at: T0 - 60_000,
        fired_at: Some(T0),
        resolved_at: None,
        last_sent_at: Some(T0),
        valid_until: Some(T0 + 240_000),
        keep_firing_since: None,
    }
}

fn high_error_rate() -> NotifyAlert {
    NotifyAlert {
        alert: alert(
            &[
                ("alertname", "HighErrorRate"),
                ("severity", "critical"),
                ("job", "api"),
            ],
            &[("summary", "错误率过高"), ("description", "5xx 比例 25%")],
        ),
        generator_url: generator_url("http://weir:9300/", "rate(x[5m]) > 0.1"),
    }
}

fn notification(alerts: Vec<NotifyAlert>) -> Notification {
    Notification {
        receiver: "weir".into(),
        group_labels: Labels::from_pairs([("alertname", "HighErrorRate")]),
        alerts,
        external_url: "http://weir:9300".into(),
    }
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON")
}

#[test]
fn generator_url_as_prometheus() {
    assert_eq!(
        generator_url("http://weir:9300/", "rate(x[5m]) > 0.1"),
        "http://weir:9300/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+0.1&g0.tab=1"
    );
}

#[test]
fn alertmanager_v2_payload() {
    let mut resolved = high_error_rate();
    resolved.alert.labels = Labels::from_pairs([("alertname", "Down")]);
    resolved.alert.annotations.clear();
    resolved.alert.resolved_at = Some(T0 + 30_500);
    let mut no_valid_until = high_error_rate();
    no_valid_until.alert.valid_until = None;
    no_valid_until.alert.fired_at = None;
    let body = alertmanager_body(&[high_error_rate(), resolved, no_valid_until], T0, 60_000);
    let url = "http://weir:9300/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+0.1&g0.tab=1";
    assert_eq!(
        parse(&body),
        json!([
            {"labels": {"alertname": "HighErrorRate", "job": "api", "severity": "critical"},
             "annotations": {"description": "5xx 比例 25%", "summary": "错误率过高"},
             "startsAt": "2025-01-31T08:00:00.000Z", "endsAt": "2025-01-31T08:04:00.000Z",
             "generatorURL": url},
            {"labels": {"alertname": "Down"}, "annotations": {},
             "startsAt": "2025-01-31T08:00:00.000Z", "endsAt": "2025-01-31T08:00:30.500Z",
             "generatorURL": url},
            {"labels": {"alertname": "HighErrorRate", "job": "api", "severity": "critical"},
             "annotations": {"description": "5xx 比例 25%", "summary": "错误率过高"},
             "startsAt": "2025-01-31T07:59:00.000Z", "endsAt": "2025-01-31T08:04:00.000Z",
             "generatorURL": url},
        ])
    );
}

#[test]
fn fingerprint_as_alertmanager() {
    // python3: FNV-1a 64 over b"alertname\xffHighErrorRate\xffseverity\xffcritical\xff".
    let ls = Labels::from_pairs([("severity", "critical"), ("alertname", "HighErrorRate")]);
    assert_eq!(fingerprint(&ls), "087036d1e9d728e4");
    assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
}

#[test]
fn webhook_payload() {
    let mut other = high_error_rate();
    other.alert.labels = Labels::from_pairs([
        ("alertname", "HighErrorRate"),
        ("severity", "critical"),
        ("job", "web"),
    ]);
    other.alert.resolved_at = Some(T0 + 1_000);
    let n = notification(vec![high_error_rate(), other]);
    let url = "http://weir:9300/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+0.1&g0.tab=1";
    let ann = json!({"description": "5xx 比例 25%", "summary": "错误率过高"});
    let web = Labels::from_pairs([
        ("alertname", "HighErrorRate"),
        ("job", "web"),
        ("severity", "critical"),
    ]);
    assert_eq!(
        parse(&webhook_body(&n)),
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"HighErrorRate\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "weir",
            "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {"alertname": "HighErrorRate", "severity": "critical"},
            "commonAnnotations": ann,
            "externalURL": "http://weir:9300",
            "alerts": [
                {"status": "firing",
                 "labels": {"alertname": "HighErrorRate", "job": "api", "severity": "critical"},
                 "annotations": ann, "startsAt": "2025-01-31T08:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": url,
                 "fingerprint": fingerprint(&high_error_rate().alert.labels)},
                {"status": "resolved",
                 "labels": {"alertname": "HighErrorRate", "job": "web", "severity": "critical"},
                 "annotations": ann, "startsAt": "2025-01-31T08:00:00Z",
                 "endsAt": "2025-01-31T08:00:01Z", "generatorURL": url,
                 "fingerprint": fingerprint(&web)},
            ],
        })
    );
    let resolved = notification(vec![n.alerts[1].clone()]);
    assert_eq!(resolved.status(), "resolved");
}

#[test]
fn default_text_shows_everything() {
    let n = notification(vec![high_error_rate()]);
    assert_eq!(
        default_text(&n),
        "[FIRING:1] HighErrorRate\n\n[FIRING] HighErrorRate\nSummary: 错误率过高\n\
         Description: 5xx 比例 25%\nLabels: job=api, severity=critical\nValue: 0.25\n\
         Since: 2025-01-31T08:00:00Z"
    );
}

#[test]
fn slack_payload_escapes() {
    assert_eq!(
        parse(&slack_body("a < b & c > d 中文")),
        json!({"text": "a &lt; b &amp; c &gt; d 中文"})
    );
}

#[test]
fn dingtalk_payloads() {
    assert_eq!(
        parse(&dingtalk_body(MsgType::Text, "t", "告警")),
        json!({"msgtype": "text", "text": {"content": "告警"},
               "at": {"atMobiles": [], "isAtAll": false}})
    );
    assert_eq!(
        parse(&dingtalk_body(MsgType::Markdown, "标题", "#### 告警")),
        json!({"msgtype": "markdown", "markdown": {"title": "标题", "text": "#### 告警"}})
    );
}

#[test]
fn dingtalk_signature_known_vector() {
    // python3 -c 'import hmac,hashlib,base64,urllib.parse; s="SECtest"; ts="1700000000001";
    //   b=base64.b64encode(hmac.new(s.encode(),(ts+"\n"+s).encode(),hashlib.sha256).digest()).decode();
    //   print(b, urllib.parse.quote_plus(b))'
    assert_eq!(
        dingtalk_sign("SECtest", 1_700_000_000_001),
        "r4CWp/Dz+Ng0sbTjH1vB0Fr+uQ2fn831mssaN6/C05I="
    );
    assert_eq!(
        dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=T",
            "SECtest",
            1_700_000_000_001
        )
        .unwrap(),
        "https://oapi.dingtalk.com/robot/send?access_token=T&timestamp=1700000000001\
         &sign=r4CWp%2FDz%2BNg0sbTjH1vB0Fr%2BuQ2fn831mssaN6%2FC05I%3D"
    );
}

#[test]
fn wecom_payloads_within_limits() {
    assert_eq!(
        parse(&wecom_body(MsgType::Text, "告警")),
        json!({"msgtype": "text", "text": {"content": "告警"}})
    );
    assert_eq!(
        parse(&wecom_body(MsgType::Markdown, "# **告警**")),
        json!({"msgtype": "markdown", "markdown": {"content": "# **告警**"}})
    );
    // 3 bytes a character: 2048 bytes do not end on a boundary (2048 = 3·682 + 2).
    let long = "错".repeat(1000);
    let v = parse(&wecom_body(MsgType::Text, &long));
    let c = v["text"]["content"].as_str().unwrap();
    assert!(c.len() <= WECOM_TEXT_MAX, "{}", c.len());
    assert!(c.ends_with('…'));
    assert_eq!(c, format!("{}…", "错".repeat(681)));
    let v = parse(&wecom_body(MsgType::Markdown, &long.repeat(2)));
    let c = v["markdown"]["content"].as_str().unwrap();
    assert!(c.len() <= WECOM_MARKDOWN_MAX);
    assert_eq!(c, format!("{}…", "错".repeat(1364)));
    assert_eq!(truncate_bytes("短", 10), "短");
}

#[test]
fn debug_hides_secrets() {
    let t = crate::http::Target::new(
        "DingTalk",
        "https://oapi.dingtalk.com/robot/send?access_token=TOKEN123".into(),
        std::time::Duration::from_secs(1),
        None,
        crate::http::Auth::default(),
    )
    .unwrap();
    let n = send::NotifyTarget::new(
        send::Kind::DingTalk,
        t,
        crate::http::RetryConfig::default(),
        Some(send::Secret("SECsecret".into())),
        &crate::telemetry::Registry::default(),
    );
    let shown = format!("{n:?}");
    assert!(
        !shown.contains("TOKEN123") && !shown.contains("SECsecret"),
        "{shown}"
    );
    assert!(shown.contains("access_token=***"), "{shown}");
}

#[test]
fn default_markdown_shows_everything() {
    let n = notification(vec![high_error_rate()]);
    assert_eq!(
        default_markdown(&n),
        "#### [FIRING:1] HighErrorRate\n\n**[FIRING] HighErrorRate**\n\n- Summary: 错误率过高\n\
         - Description: 5xx 比例 25%\n- Labels: `job=api` `severity=critical`\n- Value: 0.25\n\
         - Since: 2025-01-31T08:00:00Z"
    );
}

#[test]
fn slack_blocks_payload() {
    assert_eq!(
        parse(&slack_blocks_body("[FIRING:1] A<B", "告警 & more")),
        json!({
            "text": "[FIRING:1] A&lt;B",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "*[FIRING:1] A&lt;B*"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "告警 &amp; more"}},
            ],
        })
    );
    let v = parse(&slack_blocks_body("t", &"错".repeat(5000)));
    let t = v["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(t.chars().count(), SLACK_SECTION_MAX);
    assert!(t.ends_with('…'));
}
