//! What the HTTP sinks (Loki, Elasticsearch) and remote write share: the
//! auth and TLS settings, the client built from them, the URL check, and
//! reading a server's `Retry-After`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA that signed the server's certificate.
    pub ca_file: Option<String>,
}

/// Whether `url` is an http(s) URL.
pub fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && reqwest::Url::parse(url).is_ok()
}

/// A client with weir's user agent, a request timeout and the configured CA.
pub fn client(timeout: Duration, tls: Option<&TlsConfig>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = tls.and_then(|t| t.ca_file.as_ref()) {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {ca}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("{ca} is not a PEM certificate: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A server's `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let d = when.duration_since(jiff::Timestamp::now());
    Some(Duration::from_secs_f64(d.as_secs_f64().max(0.0)))
}

/// What to say when a request got no answer: a timeout says so, anything
/// else is a server that cannot be reached. `shown_url` is already
/// redacted; the client's own error text is stripped of the URL it quotes.
pub fn request_error(
    server: &str,
    shown_url: &str,
    e: &reqwest::Error,
    timeout: Duration,
) -> String {
    if e.is_timeout() {
        format!(
            "{server} at {shown_url} did not answer within request_timeout ({timeout:?}); it may be overloaded or hung"
        )
    } else {
        format!(
            "cannot reach {server} at {shown_url}: {}",
            crate::redact::error(e)
        )
    }
}
