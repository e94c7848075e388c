//! Email notifications over SMTP with `lettre`: STARTTLS (port 587) or
//! implicit TLS (465) with rustls, or clear text (25) for a local relay;
//! `AUTH PLAIN`/`LOGIN` when a user is set; an extra root CA for a private
//! server; subject and body in UTF-8 (the subject as RFC 2047 encoded
//! words, the body with a transfer encoding that keeps it intact).
//!
//! Delivery is retried like the HTTP notifiers ([`super::send`]): no
//! answer (connection refused, reset, timed out) and SMTP `4xx` are tried
//! again with [`Backoff`] until the retry's `max_duration`; `5xx`, TLS
//! failures (a certificate that does not verify) and client errors fail at
//! once. Every delivery is counted in
//! `weir_notifications_total{notifier="email",outcome}`.
//!
//! The password never leaves through an error or a `Debug`: it is a
//! [`Secret`], errors are scrubbed of it, and [`EmailConfig::check`]
//! refuses to send it in clear text (`tls: none`) to anything but
//! loopback.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart, header};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::Notification;
use super::send::{Attempt, DEFAULT_MAX_RETRY, Kind, Outcomes, Secret, with_retries};
use crate::config::units::Dur;
use crate::http::RetryConfig;
use crate::telemetry::Registry;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Clear text, then `STARTTLS` (required: never falls back to clear).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// Clear text only: for a relay on the same host or network.
    None,
}

impl EmailTls {
    /// The usual port: 587, 465, 25.
    pub fn default_port(self) -> u16 {
        match self {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        }
    }
}

/// The `email` notifier's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    /// Default: by `tls` (587, 465, 25).
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: EmailTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    #[serde(default)]
    pub from: String,
    /// A list, or one string of comma-separated addresses
    /// (`EMAIL_ALERTS=a@x,b@y`).
    #[serde(default, deserialize_with = "addresses")]
    pub to: Vec<String>,
    /// A PEM file with an extra root CA (a private or self-signed server).
    pub ca_file: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// The name given in `EHLO` (default: this host's name).
    pub hello_name: Option<String>,
    /// Default: 500ms doubling to 5m, giving up after 10 minutes.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// `to` as a list of strings or one comma-separated string; each entry
/// may itself hold several comma-separated addresses.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let list = match OneOrMany::deserialize(d)
        .map_err(|_| de::Error::custom("`to` must be an address, a list of addresses, or one string of comma-separated addresses"))?
    {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    Ok(split_addresses(&list))
}

/// The addresses in `list`, each entry split at commas, trimmed, empty
/// ones dropped.
pub fn split_addresses(list: &[String]) -> Vec<String> {
    list.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Whether `host` is this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn mailbox(key: &str, s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>()
        .map_err(|e| format!("email `{key}`: `{s}` is not an email address ({e})"))
}

impl EmailConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.tls.default_port())
    }

    /// Checks what serde cannot: every key's error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("email `host` is empty: give the SMTP server's name".into());
        }
        if self.port == Some(0) {
            return Err("email `port` must be 1..65535".into());
        }
        if self.from.trim().is_empty() {
            return Err("email `from` is missing: give the sender's address".into());
        }
        mailbox("from", &self.from)?;
        if self.to.is_empty() {
            return Err(
                "email `to` is missing: give at least one recipient (a list, or `a@x,b@y`)".into(),
            );
        }
        for a in &self.to {
            mailbox("to", a)?;
        }
        if self.password.is_some() && self.username.as_deref().is_none_or(str::is_empty) {
            return Err("email `password` is set without `username`".into());
        }
        if self.username.as_deref() == Some("") {
            return Err("email `username` is empty".into());
        }
        if self.tls == EmailTls::None && self.password.is_some() && !is_loopback(&self.host) {
            return Err(format!(
                "email `tls: none` with a `password` would send the password in clear text to `{}`: \
                 use `tls: starttls` or `tls: tls`, or `tls: none` only for a relay on localhost",
                self.host
            ));
        }
        if self.timeout.0.is_zero() {
            return Err("email `timeout` must be more than 0".into());
        }
        if let Some(h) = &self.hello_name
            && (h.is_empty() || h.contains(char::is_whitespace))
        {
            return Err(format!("email `hello_name`: `{h}` is not a host name"));
        }
        Ok(())
    }
}

/// An email notifier: the SMTP transport, the envelope's addresses and
/// the counters. Its `Debug` shows the server and addresses, never the
/// password.
#[derive(Clone)]
pub struct EmailTarget {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port`, for messages.
    server: String,
    username: Option<String>,
    password: Option<Secret>,
    retry: RetryConfig,
    outcomes: Outcomes,
}

impl fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailTarget")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl EmailTarget {
    /// Checks `cfg`, reads its `ca_file`, and builds the transport,
    /// counted in `registry` as `notifier="email"`. A `retry` without
    /// `max_duration` gives up after [`DEFAULT_MAX_RETRY`].
    pub fn new(cfg: &EmailConfig, registry: &Registry) -> Result<EmailTarget, String> {
        cfg.check()?;
        let host = cfg.host.trim().to_string();
        let port = cfg.port();
        let tls = match cfg.tls {
            EmailTls::None => Tls::None,
            EmailTls::Starttls => Tls::Required(tls_parameters(cfg, &host)?),
            EmailTls::Tls => Tls::Wrapper(tls_parameters(cfg, &host)?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(cfg.timeout.0));
        if let Some(h) = &cfg.hello_name {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        if let Some(user) = &cfg.username {
            let pass = cfg
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default();
            b = b
                .credentials(Credentials::new(user.clone(), pass))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let mut retry = cfg.retry;
        if retry.max_duration.is_none() {
            retry.max_duration = Some(Dur(DEFAULT_MAX_RETRY));
        }
        Ok(EmailTarget {
            transport: b.build(),
            from: mailbox("from", &cfg.from)?,
            to: cfg
                .to
                .iter()
                .map(|a| mailbox("to", a))
                .collect::<Result<_, _>>()?,
            server: format!("{host}:{port}"),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            retry,
            outcomes: Outcomes::new(registry, Kind::Email),
        })
    }

    /// `host:port` of the SMTP server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `text` without the password (nor its base64 forms, as `AUTH` sends
    /// it), should a server or a library ever echo it.
    fn scrub(&self, text: String) -> String {
        use base64::Engine as _;
        let Some(p) = self.password.as_ref().filter(|p| !p.0.is_empty()) else {
            return text;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let user = self.username.as_deref().unwrap_or("");
        let mut out = text;
        for needle in [
            b64.encode(format!("\0{user}\0{}", p.0)),
            b64.encode(&p.0),
            p.0.clone(),
        ] {
            out = out.replace(&needle, crate::redact::MASK);
        }
        out
    }
}

fn tls_parameters(cfg: &EmailConfig, host: &str) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(host.to_string());
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("email `ca_file`: cannot read `{path}`: {e}"))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("email `ca_file`: `{path}` holds no PEM certificate: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| format!("email: TLS setup for `{host}` failed: {e}"))
}

/// The default subject and plain text of a notification:
/// [`super::default_title`] and [`super::default_text`].
pub fn message(n: &Notification) -> (String, String) {
    (super::default_title(n), super::default_text(n))
}

/// The message: `text` as `text/plain`, with `html` as the
/// `multipart/alternative` other part when given.
fn build(
    to: &EmailTarget,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(to.from.clone())
        .subject(subject)
        .message_id(None)
        .date_now();
    let mut all = Mailboxes::new();
    for m in &to.to {
        all.push(m.clone());
    }
    b = b.mailbox(header::To::from(all));
    let built = match html {
        None => b.singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_PLAIN)
                .body(text.to_string()),
        ),
        Some(h) => b.multipart(MultiPart::alternative_plain_html(
            text.to_string(),
            h.to_string(),
        )),
    };
    built.map_err(|e| format!("email: cannot build the message: {e}"))
}

/// Sends one email to every recipient of `to`, retrying as the module
/// says; the error is the last attempt's, without the password.
pub async fn send_email(
    to: &EmailTarget,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<(), String> {
    let msg = match build(to, subject, text, html) {
        Ok(m) => m,
        Err(e) => {
            to.outcomes.failure.inc();
            return Err(e);
        }
    };
    let envelope = msg.envelope().clone();
    let raw = msg.formatted();
    with_retries(&to.outcomes, to.retry, Kind::Email, || {
        attempt(to, &envelope, &raw)
    })
    .await
}

async fn attempt(to: &EmailTarget, envelope: &lettre::address::Envelope, raw: &[u8]) -> Attempt {
    let e = match to.transport.send_raw(envelope, raw).await {
        Ok(_) => return Attempt::Done,
        Err(e) => e,
    };
    let shown = to.scrub(describe(to, &e));
    if e.is_permanent() || e.is_tls() || e.is_client() || tls_refused(&e) {
        Attempt::Fail(shown)
    } else {
        // 4xx, no connection, a reset or a timeout, an unreadable answer.
        Attempt::Retry(shown, None)
    }
}

/// What went wrong, with the server's answer and a hint for the answers
/// that mean the settings are wrong.
fn describe(to: &EmailTarget, e: &lettre::transport::smtp::Error) -> String {
    let mut s = format!("email via {}: ", to.server);
    if let Some(code) = e.status() {
        let answer = error_chain(e, true);
        s.push_str(&format!("the server answered {code}: {answer}"));
        let user = to.username.as_deref().unwrap_or("");
        match code.to_string().as_str() {
            "535" | "534" => s.push_str(&format!(
                " (authentication as `{user}` failed: check `username` and `password`)"
            )),
            "530" if to.username.is_none() => {
                s.push_str(" (the server requires authentication: set `username` and `password`)")
            }
            _ => {}
        }
    } else if tls_refused(e) {
        s.push_str(&format!(
            "TLS with the server failed: {} (for a private CA, set `ca_file`)",
            error_chain(e, true)
        ));
    } else if e.is_timeout() {
        s.push_str(&format!("timed out: {}", error_chain(e, false)));
    } else {
        s.push_str(&error_chain(e, false));
    }
    s
}

/// Whether TLS itself failed (a certificate that does not verify, no
/// common protocol version): trying again will not help. lettre reports
/// these as connection errors, with rustls' error inside an `io::Error`.
fn tls_refused(e: &lettre::transport::smtp::Error) -> bool {
    use std::error::Error as _;
    let mut src = e.source();
    while let Some(s) = src {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|i| i.is::<rustls::Error>())
        {
            return true;
        }
        src = s.source();
    }
    false
}

/// The error and its sources, joined; `source_only` leaves out lettre's
/// own `permanent error (550)` prefix.
fn error_chain(e: &lettre::transport::smtp::Error, source_only: bool) -> String {
    use std::error::Error as _;
    let mut parts: Vec<String> = Vec::new();
    if !source_only {
        parts.push(e.to_string());
    }
    let mut src = e.source();
    let mut first = true;
    while let Some(s) = src {
        let t = s.to_string();
        if (source_only && first) || !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        first = false;
        src = s.source();
    }
    // lettre nests its own kinds: `Connection error: Connection error: …`.
    let mut out: Vec<&str> = Vec::new();
    let joined = parts.join(": ");
    for seg in joined.split(": ") {
        if out.last() != Some(&seg) {
            out.push(seg);
        }
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> EmailConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_ports() {
        let c = cfg("host: smtp.example.com\nfrom: a@example.com\nto: b@example.com\n");
        assert_eq!(c.tls, EmailTls::Starttls);
        assert_eq!(c.port(), 587);
        assert_eq!(c.timeout.0, Duration::from_secs(10));
        assert!(c.check().is_ok());
        let c = cfg("host: h\ntls: tls\nfrom: a@x.io\nto: [b@x.io]\n");
        assert_eq!(c.port(), 465);
        let c = cfg("host: h\ntls: none\nfrom: a@x.io\nto: [b@x.io]\n");
        assert_eq!(c.port(), 25);
        let c = cfg("host: h\ntls: none\nport: 2525\nfrom: a@x.io\nto: [b@x.io]\n");
        assert_eq!(c.port(), 2525);
    }

    #[test]
    fn to_as_list_or_comma_separated() {
        let c = cfg("host: h\nfrom: a@x.io\nto: 'ops@x.io, dev@y.io,,'\n");
        assert_eq!(c.to, ["ops@x.io", "dev@y.io"]);
        let c = cfg("host: h\nfrom: a@x.io\nto: [ops@x.io, 'a@b.io,c@d.io']\n");
        assert_eq!(c.to, ["ops@x.io", "a@b.io", "c@d.io"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<EmailConfig, _> =
            serde_saphyr::from_str("host: h\nfrom: a@x.io\nto: b@x.io\npasword: x\n");
        assert!(r.unwrap_err().to_string().contains("pasword"));
    }

    #[test]
    fn check_names_the_key() {
        let base = "host: smtp.example.com\n";
        let err = |y: &str| cfg(&format!("{base}{y}")).check().unwrap_err();
        assert!(err("to: b@x.io\n").contains("`from` is missing"));
        assert!(err("from: a@x.io\n").contains("`to` is missing"));
        let e = err("from: a@x.io\nto: 'b@x.io, not-an-address'\n");
        assert!(e.contains("`to`") && e.contains("not-an-address"), "{e}");
        assert!(err("from: 'x y'\nto: b@x.io\n").contains("`from`"));
        let e = err("from: a@x.io\nto: b@x.io\npassword: hunter2\n");
        assert!(e.contains("`password` is set without `username`"), "{e}");
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn no_password_in_clear_text_over_a_network() {
        let y = "from: a@x.io\nto: b@x.io\ntls: none\nusername: u\npassword: hunter2\n";
        let e = cfg(&format!("host: smtp.example.com\n{y}"))
            .check()
            .unwrap_err();
        assert!(
            e.contains("clear text") && e.contains("tls: starttls"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        for host in ["localhost", "127.0.0.1", "127.0.0.53", "::1", "[::1]"] {
            let c = cfg(&format!("host: '{host}'\n{y}"));
            assert!(c.check().is_ok(), "{host}");
        }
        // Without a password, clear text anywhere is the user's choice.
        let c = cfg("host: relay.internal\nfrom: a@x.io\nto: b@x.io\ntls: none\n");
        assert!(c.check().is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = cfg("host: h\nfrom: a@x.io\nto: b@x.io\nusername: u\npassword: hunter2\n");
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = EmailTarget::new(&c, &Registry::default()).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        let s = t.scrub("echo hunter2 and aHVudGVyMg== and AHUAaHVudGVyMg==".into());
        assert!(
            !s.contains("hunter2") && !s.contains("aHVudGVyMg") && !s.contains("AHUAaHVudGVyMg"),
            "{s}"
        );
    }

    #[test]
    fn missing_ca_file_is_named() {
        let c = cfg("host: h\nfrom: a@x.io\nto: b@x.io\nca_file: /nonexistent/ca.pem\n");
        let e = EmailTarget::new(&c, &Registry::default()).unwrap_err();
        assert!(
            e.contains("`ca_file`") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
