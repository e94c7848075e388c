//! The email notifier against the testkit's SMTP server, in each mode
//! (clear text, STARTTLS, implicit TLS with the server's CA as `ca_file`),
//! with AUTH: a Chinese subject and body arrive intact (read back as a
//! mail reader would), a 451 is retried, a 550 and a wrong password fail
//! at once with the server's answer, and no error holds the password.

use std::net::TcpListener;
use std::time::Duration;

use weir::alert::notify::email::{EmailConfig, EmailTarget, message, send_email};
use weir::alert::notify::{Notification, NotifyAlert};
use weir::alert::promql::Labels;
use weir::alert::state::{Alert, AlertState};
use weir::telemetry::Registry;
use weir_testkit::mail::Part;
use weir_testkit::smtp::{Received, Security, SmtpOptions, SmtpServer, Stage};

const USER: &str = "alerts@example.com";
const PASSWORD: &str = "pa55-w0rd-never-shown";
const SUBJECT: &str = "【严重】接口错误率过高 HighErrorRate";
const BODY: &str = "接口 /api/orders 错误率 25%，超过阈值 5%。\n请值班同学立即处理。\n\n.a line with a leading dot\nValue: 0.25";

fn server(security: Security, auth: bool) -> SmtpServer {
    SmtpServer::start(SmtpOptions {
        security,
        auth: auth.then(|| (USER.to_string(), PASSWORD.to_string())),
        ..SmtpOptions::default()
    })
}

/// The config for `server`, with `extra` YAML lines; fast retries.
fn config(host: &str, port: u16, extra: &str) -> EmailConfig {
    let yaml = format!(
        "host: '{host}'\nport: {port}\nfrom: 'Weir 告警 <weir@example.com>'\n\
         to: 'ops@example.com, 值班@example.com'\ntimeout: 5s\nhello_name: weir.test\n\
         retry: {{initial_backoff: 50ms, max_backoff: 200ms, max_duration: 3s}}\n{extra}"
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn with_auth(password: &str) -> String {
    format!("username: '{USER}'\npassword: '{password}'\n")
}

fn ca_file(s: &SmtpServer) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, s.ca_pem()).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, format!("ca_file: '{p}'\n"))
}

fn counted(reg: &Registry, outcome: &str) -> u64 {
    let mut out = String::new();
    reg.render(&mut out);
    let series = format!("weir_notifications_total{{notifier=\"email\",outcome=\"{outcome}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// What a mail reader shows of `m`, checked against what was sent.
fn assert_intact(m: &Received, subject: &str, text: &str) -> Part {
    assert_eq!(m.from, "weir@example.com");
    assert_eq!(m.to, ["ops@example.com", "值班@example.com"]);
    let p = Part::parse(&m.data);
    let raw_subject = p.raw_header("Subject").unwrap();
    if !subject.is_ascii() {
        assert!(
            raw_subject.to_ascii_lowercase().contains("=?utf-8?"),
            "RFC 2047: {raw_subject}"
        );
    }
    // 7-bit on the wire but for the internationalized address (SMTPUTF8).
    let wire = m.text();
    let non_ascii: Vec<&str> = wire.lines().filter(|l| !l.is_ascii()).collect();
    assert_eq!(
        non_ascii,
        ["To: ops@example.com, 值班@example.com"],
        "{wire}"
    );
    assert_eq!(p.header("Subject").unwrap(), subject);
    let from = p.header("From").unwrap();
    assert_eq!(
        from.replace('"', ""),
        "Weir 告警 <weir@example.com>",
        "{from}"
    );
    let to = p.header("To").unwrap();
    assert!(
        to.contains("ops@example.com") && to.contains("值班@example.com"),
        "{to}"
    );
    assert!(p.raw_header("Date").is_some() && p.raw_header("Message-ID").is_some());
    let plain = p.find("text/plain").expect("a text/plain part");
    assert_eq!(
        plain.content_type_param("charset").as_deref(),
        Some("utf-8")
    );
    // Lines travel as CRLF; the text is otherwise unchanged.
    assert_eq!(plain.text().replace("\r\n", "\n").trim_end(), text);
    p
}

#[tokio::test]
async fn clear_text_to_a_local_relay() {
    let s = server(Security::None, false);
    let reg = Registry::default();
    let t = EmailTarget::new(&config("127.0.0.1", s.port(), "tls: none\n"), &reg).unwrap();
    send_email(&t, SUBJECT, BODY, None).await.unwrap();
    let m = s.wait_for(1, Duration::from_secs(5));
    assert_eq!(m.len(), 1);
    assert!(!m[0].tls);
    assert_eq!(m[0].auth_user, None);
    assert_eq!(m[0].helo, "weir.test");
    assert_intact(&m[0], SUBJECT, BODY);
    assert_eq!((counted(&reg, "success"), counted(&reg, "retry")), (1, 0));
}

#[tokio::test]
async fn clear_text_with_auth_on_loopback() {
    let s = server(Security::None, true);
    let cfg = config(
        "localhost",
        s.port(),
        &format!("tls: none\n{}", with_auth(PASSWORD)),
    );
    let t = EmailTarget::new(&cfg, &Registry::default()).unwrap();
    send_email(&t, SUBJECT, BODY, None).await.unwrap();
    let m = s.wait_for(1, Duration::from_secs(5));
    assert_eq!(m[0].auth_user.as_deref(), Some(USER));
}

#[tokio::test]
async fn starttls_with_auth_and_the_servers_ca() {
    let s = server(Security::StartTls, true);
    let (_dir, ca) = ca_file(&s);
    let cfg = config(
        "localhost",
        s.port(),
        &format!("{ca}{}", with_auth(PASSWORD)),
    );
    let reg = Registry::default();
    let t = EmailTarget::new(&cfg, &reg).unwrap();
    send_email(&t, SUBJECT, BODY, None).await.unwrap();
    let m = s.wait_for(1, Duration::from_secs(5));
    assert!(m[0].tls, "upgraded before MAIL");
    assert_eq!(m[0].auth_user.as_deref(), Some(USER));
    assert_intact(&m[0], SUBJECT, BODY);
    assert_eq!(counted(&reg, "success"), 1);
}

#[tokio::test]
async fn implicit_tls_with_a_html_part() {
    let s = server(Security::Tls, true);
    let (_dir, ca) = ca_file(&s);
    let cfg = config(
        "127.0.0.1",
        s.port(),
        &format!("tls: tls\n{ca}{}", with_auth(PASSWORD)),
    );
    let t = EmailTarget::new(&cfg, &Registry::default()).unwrap();
    let html = "<p><b>严重</b>：接口错误率过高</p>";
    send_email(&t, SUBJECT, BODY, Some(html)).await.unwrap();
    let m = s.wait_for(1, Duration::from_secs(5));
    assert!(m[0].tls);
    let p = assert_intact(&m[0], SUBJECT, BODY);
    assert_eq!(p.content_type(), "multipart/alternative");
    assert_eq!(p.find("text/html").unwrap().text().trim_end(), html);
}

#[tokio::test]
async fn the_servers_certificate_must_verify() {
    // Without `ca_file` the fake's CA is unknown: a TLS failure, not retried.
    let s = server(Security::Tls, false);
    let reg = Registry::default();
    let t = EmailTarget::new(&config("127.0.0.1", s.port(), "tls: tls\n"), &reg).unwrap();
    let e = send_email(&t, "x", "y", None).await.unwrap_err();
    assert!(
        e.contains("127.0.0.1:") && e.contains("TLS") && e.contains("certificate"),
        "{e}"
    );
    assert!(e.contains("`ca_file`"), "hints at ca_file: {e}");
    assert!(s.messages().is_empty());
    assert_eq!((counted(&reg, "failure"), counted(&reg, "retry")), (1, 0));
}

#[tokio::test]
async fn a_notification_has_a_default_subject_and_text() {
    let t0 = 1_738_310_400_000;
    let n = Notification {
        receiver: "email".into(),
        group_labels: Labels::from_pairs([("alertname", "HighErrorRate")]),
        alerts: vec![NotifyAlert {
            alert: Alert {
                state: AlertState::Firing,
                labels: Labels::from_pairs([
                    ("alertname", "HighErrorRate"),
                    ("severity", "critical"),
                ]),
                annotations: vec![("summary".into(), "接口错误率过高".into())],
                value: 0.25,
                active_at: t0,
                fired_at: Some(t0),
                resolved_at: None,
                last_sent_at: None,
                valid_until: None,
                keep_firing_since: None,
            },
            generator_url: String::new(),
        }],
        external_url: String::new(),
    };
    let (subject, text) = message(&n);
    assert_eq!(subject, "[FIRING:1] HighErrorRate");
    assert!(text.contains("Summary: 接口错误率过高"), "{text}");
    let s = server(Security::None, false);
    let t = EmailTarget::new(
        &config("127.0.0.1", s.port(), "tls: none\n"),
        &Registry::default(),
    )
    .unwrap();
    send_email(&t, &subject, &text, None).await.unwrap();
    let m = s.wait_for(1, Duration::from_secs(5));
    assert_intact(&m[0], &subject, &text);
}

#[tokio::test]
async fn a_transient_451_is_retried() {
    let s = server(Security::StartTls, true);
    s.fail_next(2, 451);
    let (_dir, ca) = ca_file(&s);
    let reg = Registry::default();
    let cfg = config(
        "localhost",
        s.port(),
        &format!("{ca}{}", with_auth(PASSWORD)),
    );
    let t = EmailTarget::new(&cfg, &reg).unwrap();
    send_email(&t, SUBJECT, BODY, None).await.unwrap();
    assert_eq!(s.transactions(), 3);
    assert_eq!(s.messages().len(), 1);
    assert_eq!((counted(&reg, "retry"), counted(&reg, "success")), (2, 1));
    assert_eq!(counted(&reg, "failure"), 0);
}

#[tokio::test]
async fn a_421_that_closes_the_connection_is_retried() {
    let s = server(Security::None, false);
    s.fail_next_at(Stage::Mail, 1, 421);
    let reg = Registry::default();
    let t = EmailTarget::new(&config("127.0.0.1", s.port(), "tls: none\n"), &reg).unwrap();
    send_email(&t, SUBJECT, BODY, None).await.unwrap();
    assert_eq!((counted(&reg, "retry"), counted(&reg, "success")), (1, 1));
}

#[tokio::test]
async fn a_permanent_550_fails_at_once() {
    let s = server(Security::StartTls, true);
    s.fail_next(5, 550);
    let (_dir, ca) = ca_file(&s);
    let reg = Registry::default();
    let cfg = config(
        "localhost",
        s.port(),
        &format!("{ca}{}", with_auth(PASSWORD)),
    );
    let t = EmailTarget::new(&cfg, &reg).unwrap();
    let e = send_email(&t, SUBJECT, BODY, None).await.unwrap_err();
    assert!(e.contains("550") && e.contains("relaying denied"), "{e}");
    assert!(e.contains(&format!("localhost:{}", s.port())), "{e}");
    assert!(!e.contains(PASSWORD), "{e}");
    assert_eq!(s.transactions(), 1, "not retried");
    assert_eq!((counted(&reg, "failure"), counted(&reg, "retry")), (1, 0));
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let s = server(Security::StartTls, true);
    let (_dir, ca) = ca_file(&s);
    let reg = Registry::default();
    let wrong = "wr0ng-pa55w0rd-secret";
    let cfg = config("localhost", s.port(), &format!("{ca}{}", with_auth(wrong)));
    let t = EmailTarget::new(&cfg, &reg).unwrap();
    let e = send_email(&t, SUBJECT, BODY, None).await.unwrap_err();
    assert!(e.contains("535"), "{e}");
    assert!(
        e.contains(&format!("authentication as `{USER}` failed")),
        "{e}"
    );
    assert!(!e.contains(wrong) && !e.contains(PASSWORD), "{e}");
    assert_eq!(s.auth_failures(), 1, "not retried");
    assert!(s.messages().is_empty());
    assert_eq!(counted(&reg, "failure"), 1);
}

#[tokio::test]
async fn no_server_is_retried_until_max_duration() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reg = Registry::default();
    let cfg = config(
        "127.0.0.1",
        port,
        &format!("tls: none\n{}", with_auth(PASSWORD)),
    );
    let t = EmailTarget::new(&cfg, &reg).unwrap();
    let started = std::time::Instant::now();
    let e = send_email(&t, "x", "y", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        e.contains("gave up after") && e.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
    assert!(!e.contains(PASSWORD), "{e}");
    assert!(counted(&reg, "retry") >= 2, "retried");
    assert_eq!(counted(&reg, "failure"), 1);
}
