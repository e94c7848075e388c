//! The HTTP target every outgoing integration shares — the Loki and
//! Elasticsearch sinks, remote write, and the notifiers to come: where the
//! requests go, how they authenticate (basic, bearer, API key, extra
//! headers), which CA they trust, request-body compression, and one retry
//! policy (exponential backoff with full jitter, a server's `Retry-After`
//! as seconds or an HTTP date, an optional limit on how long to try).
//!
//! What a target says about itself and its failures never holds a password:
//! the URL it shows is redacted, and client errors lose the URL they quote.
//! Deciding what an answer means (which statuses are retried, what is
//! dead-lettered) stays with each integration.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units::Dur;

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

/// How a request proves who sends it; any combination may be set.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub basic: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    /// Elasticsearch's `Authorization: ApiKey …`.
    pub api_key: Option<String>,
    /// Sent with every request (tenant headers and the like).
    pub headers: Vec<(String, String)>,
}

/// Whether `url` is an http(s) URL.
pub fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && reqwest::Url::parse(url).is_ok()
}

/// One destination: a pooled client and the request settings for `url`.
#[derive(Debug, Clone)]
pub struct Target {
    client: reqwest::Client,
    url: String,
    shown_url: String,
    /// What the server is, for messages: `Loki`, `Elasticsearch`, ….
    server: &'static str,
    timeout: Duration,
    auth: Auth,
}

impl Target {
    pub fn new(
        server: &'static str,
        url: String,
        timeout: Duration,
        tls: Option<&TlsConfig>,
        auth: Auth,
    ) -> Result<Target, String> {
        Ok(Target {
            client: client(timeout, tls)?,
            shown_url: crate::redact::redact_url(&url).into_owned(),
            url,
            server,
            timeout,
            auth,
        })
    }

    /// The URL as weir shows it: without a password.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// A POST of `body` with the target's authentication and headers;
    /// `encoding` names the body's compression (`gzip`, `snappy`).
    pub fn post(
        &self,
        body: Vec<u8>,
        content_type: &str,
        encoding: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header(reqwest::header::CONTENT_ENCODING, e);
        }
        for (k, v) in &self.auth.headers {
            req = req.header(k, v);
        }
        if let Some(a) = &self.auth.basic {
            req = req.basic_auth(&a.user, Some(&a.password));
        }
        if let Some(k) = &self.auth.api_key {
            req = req.header(reqwest::header::AUTHORIZATION, format!("ApiKey {k}"));
        }
        if let Some(t) = &self.auth.bearer_token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// What to say when a request got no answer: a timeout says so,
    /// anything else is a server that cannot be reached.
    pub fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "{} at {} did not answer within request_timeout ({:?}); it may be overloaded or hung",
                self.server, self.shown_url, self.timeout
            )
        } else {
            format!(
                "cannot reach {} at {}: {}",
                self.server,
                self.shown_url,
                crate::redact::error(e)
            )
        }
    }
}

/// A client with weir's user agent, a request timeout and the configured CA.
fn client(timeout: Duration, tls: Option<&TlsConfig>) -> Result<reqwest::Client, String> {
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

/// `raw` gzip-compressed (fast level: request bodies, not archives).
pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::new(raw.len() / 4);
    gz.write(raw);
    gz.finish(raw)
}

/// One gzip member, compressed as its input arrives (fast level). The
/// trailer's CRC-32 is taken over the whole input at the end, in one pass —
/// SIMD where the CPU has it — rather than a little with every write: a
/// bulk body is written a document at a time, and small CRC updates were a
/// sixth of the Elasticsearch sink's CPU.
pub struct Gzip {
    deflate: flate2::write::DeflateEncoder<Vec<u8>>,
    written: u64,
}

impl Gzip {
    /// The gzip header: deflate, no name or time, unknown OS.
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

    pub fn new(capacity: usize) -> Gzip {
        let mut out = Vec::with_capacity(capacity.max(64));
        out.extend_from_slice(&Self::HEADER);
        Gzip {
            deflate: flate2::write::DeflateEncoder::new(out, flate2::Compression::fast()),
            written: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.deflate.write_all(bytes).expect("deflate to a Vec");
        self.written += bytes.len() as u64;
    }

    /// The whole member; `input` is everything written, in order.
    pub fn finish(self, input: &[u8]) -> Vec<u8> {
        assert_eq!(
            input.len() as u64,
            self.written,
            "the input given to finish is what was written"
        );
        let mut out = self.deflate.finish().expect("deflate to a Vec");
        out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        out
    }
}

/// What a request came back with: its status, `Retry-After` and body.
pub type Reply = Result<(reqwest::StatusCode, Option<Duration>, String), reqwest::Error>;

/// Sends the request and reads its whole answer.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await?;
    let status = resp.status();
    let after = retry_after(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    Ok((status, after, text))
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

/// How a failed request is retried (the `retry` key of every HTTP sink).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Dur,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Dur,
    /// Give up after this long (default: never; backpressure reaches the
    /// sources instead).
    pub max_duration: Option<Dur>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_duration: None,
        }
    }
}

fn default_initial_backoff() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_max_backoff() -> Dur {
    Dur(Duration::from_secs(300))
}

/// The waits between the attempts of one delivery: exponential, each drawn
/// with full jitter, never shorter than what the server asked for.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryConfig,
    next: Duration,
    jitter: Jitter,
}

impl Backoff {
    pub fn new(policy: RetryConfig) -> Backoff {
        Backoff {
            next: policy.initial_backoff.0,
            policy,
            jitter: Jitter::new(),
        }
    }

    /// The wait before the next attempt; `retry_after` is the server's ask.
    pub fn wait(&mut self, retry_after: Option<Duration>) -> Duration {
        let wait = self.jitter.up_to(self.next);
        self.next = (self.next * 2).min(self.policy.max_backoff.0);
        retry_after.map_or(wait, |a| wait.max(a))
    }

    /// Starts over for the next delivery.
    pub fn reset(&mut self) {
        self.next = self.policy.initial_backoff.0;
    }

    /// Whether a delivery started `elapsed` ago should give up.
    pub fn exhausted(&self, elapsed: Duration) -> bool {
        self.policy.max_duration.is_some_and(|m| elapsed >= m.0)
    }
}

/// A small xorshift generator for backoff jitter (not for anything secret).
#[derive(Debug, Clone)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Jitter(seed | 1)
    }

    /// A duration uniformly drawn from [0, max] ("full jitter").
    fn up_to(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        max.mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("a valid gzip member, CRC and length included");
        out
    }

    #[test]
    fn gzip_written_in_pieces_decodes_to_its_input() {
        let doc: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"n\":{i},\"m\":\"héllo\"}}\n").into_bytes())
            .collect();
        let mut gz = Gzip::new(0);
        for piece in doc.chunks(37) {
            gz.write(piece);
        }
        let member = gz.finish(&doc);
        assert_eq!(&member[..3], [0x1f, 0x8b, 8]);
        assert_eq!(gunzip(&member), doc);
        assert_eq!(gunzip(&gzip(&doc)), doc);
        assert_eq!(gunzip(&gzip(b"")), b"");
        // The trailer is what gzip(1) writes: CRC-32 and length, little-endian.
        let n = member.len();
        assert_eq!(member[n - 8..n - 4], crc32fast::hash(&doc).to_le_bytes());
        assert_eq!(member[n - 4..], (doc.len() as u32).to_le_bytes());
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_honours_retry_after() {
        let mut b = Backoff::new(RetryConfig {
            initial_backoff: Dur(Duration::from_millis(100)),
            max_backoff: Dur(Duration::from_millis(400)),
            max_duration: Some(Dur(Duration::from_secs(1))),
        });
        let caps = [100, 200, 400, 400];
        for cap in caps {
            assert!(b.wait(None) <= Duration::from_millis(cap));
        }
        assert_eq!(b.wait(Some(Duration::from_secs(3))), Duration::from_secs(3));
        b.reset();
        assert!(b.wait(None) <= Duration::from_millis(100));
        assert!(!b.exhausted(Duration::from_millis(999)));
        assert!(b.exhausted(Duration::from_secs(1)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past");
    }
}
