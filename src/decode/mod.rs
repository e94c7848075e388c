//! Decoding: from a line of text to an [`Event`].
//!
//! Codecs are `json` (one object per line), `regex` (named captures become
//! fields) and `raw` (the line becomes `message`). A line that fails to decode
//! never stops the pipeline: with `on_error: keep` it travels on as a raw event
//! marked with `weir_decode_error`, with `drop` it is discarded; both are
//! counted by reason. The event time comes from a configured field, else the
//! time the line was read.
//!
//! With `container: cri | docker | auto` each line is a container runtime's
//! record around the application's line (see `container`): the source
//! unwraps it and joins partial records before multiline joining, and the
//! decoder then decodes the application's line with the codec as usual,
//! adds `stream`, and takes the runtime's time when the line carries none.
//! A line that is not a record of the format is a decode error like any
//! other (`reason="invalid_container_line"`).
//!
//! Framing (finding the lines) and multiline joining happen before this.

pub mod container;
pub mod json;
pub mod scan;
pub mod timestamp;

use serde::Deserialize;

use crate::config::invalid::Invalid;
use crate::event::{Event, Field, Text, Value};
use crate::telemetry::{Counter, Registry};
use container::{ContainerFormat, Envelope};
use timestamp::{TimeFormat, TimeParser};

/// The field that marks an event whose line could not be decoded.
pub const ERROR_FIELD: &str = "weir_decode_error";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    #[default]
    Json,
    Regex,
    Raw,
}

impl<'de> Deserialize<'de> for Codec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const CODECS: &[&str] = &["json", "regex", "raw"];
        let name = String::deserialize(d)?;
        match name.as_str() {
            "json" => Ok(Codec::Json),
            "regex" => Ok(Codec::Regex),
            "raw" => Ok(Codec::Raw),
            // What Vector and Fluent Bit users may try first.
            "cri" | "docker" | "docker_json" | "json_file" => {
                Err(serde::de::Error::custom(format!(
                    "`{name}` is a container format, not a codec: write `container: {}` and keep `codec:` for the application's line inside (json, regex or raw)",
                    if name == "cri" { "cri" } else { "docker" }
                )))
            }
            other => Err(serde::de::Error::unknown_variant(other, CODECS)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Keep,
    Drop,
}

/// The `decode:` block of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    #[serde(default)]
    pub codec: Codec,
    /// Regex with named groups, for `codec: regex`.
    pub pattern: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
    pub timestamp: Option<TimestampConfig>,
    /// The container runtime's envelope around each line, if any.
    pub container: Option<ContainerFormat>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            codec: Codec::Json,
            pattern: None,
            on_error: OnError::Keep,
            timestamp: None,
            container: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    #[serde(default = "default_time_field")]
    pub field: String,
    #[serde(default = "default_time_format")]
    pub format: String,
    /// IANA zone for stamps written without an offset (default UTC).
    pub timezone: Option<String>,
}

fn default_time_field() -> String {
    "timestamp".into()
}
fn default_time_format() -> String {
    "auto".into()
}

enum CodecImpl {
    Json,
    Regex(regex::Regex),
    Raw,
}

/// Why decoding failed, as the `reason` label of the self-metric.
const REASONS: [&str; 3] = ["invalid_json", "not_an_object", "no_match"];

/// Decodes lines for one source. Owned by the source's task.
pub struct Decoder {
    codec: CodecImpl,
    on_error: OnError,
    time_field: Option<(String, TimeParser)>,
    errors: [Counter; 3],
    /// Lines that are not records of the container format (only with
    /// `container`, so that other sources expose no such series).
    envelope_errors: Option<Counter>,
    local_envelope_errors: u64,
    time_fallback: Counter,
    /// Counts since the last [`Decoder::publish`]; kept local so the hot path
    /// touches no shared memory.
    local_errors: [u64; 3],
    local_fallback: u64,
    /// Fields of the last JSON line: room to make for the next one.
    fields_hint: usize,
}

impl Decoder {
    /// Checks the configuration; nothing is registered.
    pub fn check(cfg: &DecodeConfig) -> Result<(), Invalid> {
        Self::build_parts(cfg).map(|_| ())
    }

    #[allow(clippy::type_complexity)]
    fn build_parts(
        cfg: &DecodeConfig,
    ) -> Result<(CodecImpl, Option<(String, TimeParser)>), Invalid> {
        let codec = match (cfg.codec, &cfg.pattern) {
            (Codec::Regex, None) => {
                return Err(Invalid::at(
                    &["codec"],
                    "`codec: regex` needs a `pattern` with named groups, e.g. `^(?P<level>\\w+): (?P<message>.*)$`",
                ));
            }
            (Codec::Regex, Some(p)) => {
                let re = regex::Regex::new(p).map_err(|e| {
                    Invalid::at(
                        &["pattern"],
                        format!("invalid regex: {}", one_line(&e.to_string())),
                    )
                })?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(Invalid::at(
                        &["pattern"],
                        "the pattern has no named groups like `(?P<level>\\w+)`, so it would produce no fields",
                    ));
                }
                CodecImpl::Regex(re)
            }
            (_, Some(_)) => {
                return Err(Invalid::at(
                    &["pattern"],
                    "`pattern` only applies to `codec: regex`",
                ));
            }
            (Codec::Json, None) => CodecImpl::Json,
            (Codec::Raw, None) => CodecImpl::Raw,
        };
        let time = match (&cfg.timestamp, cfg.codec) {
            (Some(_), Codec::Raw) => {
                return Err(Invalid::at(
                    &["timestamp"],
                    "`codec: raw` has no fields to take a timestamp from",
                ));
            }
            (None, Codec::Json) => Some((
                default_time_field(),
                TimeParser {
                    format: TimeFormat::Auto,
                    zone: None,
                },
            )),
            (None, _) => None,
            (Some(t), _) => {
                let format = TimeFormat::parse(&t.format)
                    .map_err(|message| Invalid::at(&["timestamp", "format"], message))?;
                let zone = match &t.timezone {
                    None => None,
                    Some(z) => Some(jiff::tz::TimeZone::get(z).map_err(|e| {
                        Invalid::at(
                            &["timestamp", "timezone"],
                            format!("unknown time zone `{z}`: {e}"),
                        )
                    })?),
                };
                Some((t.field.clone(), TimeParser { format, zone }))
            }
        };
        Ok((codec, time))
    }

    pub fn new(cfg: &DecodeConfig, registry: &Registry, source: &str) -> Result<Decoder, Invalid> {
        let (codec, time_field) = Self::build_parts(cfg)?;
        let errors = REASONS.map(|reason| {
            registry.counter(
                "weir_decode_errors_total",
                "Lines that could not be decoded, by source and reason.",
                &[("source", source), ("reason", reason)],
            )
        });
        let envelope_errors = cfg.container.map(|_| {
            registry.counter(
                "weir_decode_errors_total",
                "Lines that could not be decoded, by source and reason.",
                &[("source", source), ("reason", "invalid_container_line")],
            )
        });
        let time_fallback = registry.counter(
            "weir_timestamp_fallbacks_total",
            "Events whose time field was missing or unreadable, so the time they were read is used.",
            &[("source", source)],
        );
        Ok(Decoder {
            codec,
            on_error: cfg.on_error,
            time_field,
            errors,
            envelope_errors,
            local_envelope_errors: 0,
            time_fallback,
            local_errors: [0; 3],
            local_fallback: 0,
            fields_hint: 16,
        })
    }

    /// Decodes one line read at `received` (ns). `None` means dropped.
    pub fn decode(&mut self, line: String, received: i64) -> Option<Event> {
        self.decode_at(line, received, None)
    }

    /// Decodes the application's line taken out of a container record (or
    /// a line that was not one): the runtime's time stands in for a missing
    /// time field, and the record's stream becomes the `stream` field.
    pub fn decode_contained(
        &mut self,
        line: String,
        received: i64,
        envelope: Envelope,
    ) -> Option<Event> {
        match envelope {
            Envelope::Record { time, stream } => {
                let mut event = self.decode_at(line, received, Some(time))?;
                event.insert("stream", serde_json::Value::String(stream.as_str().into()));
                Some(event)
            }
            Envelope::Malformed(why) => {
                self.local_envelope_errors += 1;
                match self.on_error {
                    OnError::Drop => None,
                    OnError::Keep => {
                        let mut event = Event::from_text(line, received);
                        event.insert(ERROR_FIELD, serde_json::Value::String(why.to_string()));
                        Some(event)
                    }
                }
            }
        }
    }

    /// `own_time`: the time the line's container record carries, used when
    /// the line has no time field of its own. Inlined so that [`decode`]
    /// (always `None`) keeps no trace of it.
    ///
    /// [`decode`]: Decoder::decode
    #[inline(always)]
    fn decode_at(&mut self, line: String, received: i64, own_time: Option<i64>) -> Option<Event> {
        let base = own_time.unwrap_or(received);
        let result = match &self.codec {
            CodecImpl::Json => json::decode_object_sized(line, base, self.fields_hint)
                .inspect(|event| self.fields_hint = event.raw_parts().1.len().max(1))
                .map_err(|(e, line)| match e {
                    json::JsonError::Invalid(m) => (0, format!("invalid JSON: {m}"), line),
                    json::JsonError::NotAnObject(kind) => {
                        (1, format!("expected a JSON object, found {kind}"), line)
                    }
                }),
            CodecImpl::Regex(re) => decode_regex(re, line, base)
                .map_err(|line| (2, "line does not match the pattern".to_string(), line)),
            CodecImpl::Raw => Ok(Event::from_text(line, base)),
        };
        match result {
            Ok(mut event) => {
                if let Some((field, parser)) = &self.time_field {
                    match event.get(field).and_then(|v| parser.parse(v)) {
                        Some(t) => {
                            event.time = t;
                            event.timed = true;
                        }
                        None if own_time.is_some() => event.timed = true,
                        None => self.local_fallback += 1,
                    }
                } else if own_time.is_some() {
                    event.timed = true;
                }
                Some(event)
            }
            Err((reason, message, line)) => {
                self.local_errors[reason] += 1;
                match self.on_error {
                    OnError::Drop => None,
                    OnError::Keep => {
                        let mut event = Event::from_text(line, base);
                        event.timed = own_time.is_some();
                        event.insert(ERROR_FIELD, serde_json::Value::String(message));
                        Some(event)
                    }
                }
            }
        }
    }

    /// Adds the local counts to the shared self-metrics. Call once per batch.
    pub fn publish(&mut self) {
        for (local, counter) in self.local_errors.iter_mut().zip(&self.errors) {
            counter.add(std::mem::take(local));
        }
        self.time_fallback
            .add(std::mem::take(&mut self.local_fallback));
        if let Some(c) = &self.envelope_errors {
            c.add(std::mem::take(&mut self.local_envelope_errors));
        }
    }
}

fn decode_regex(re: &regex::Regex, line: String, time: i64) -> Result<Event, String> {
    let fields = match re.captures(&line) {
        None => return Err(line),
        Some(caps) => re
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| {
                let m = caps.get(i)?;
                Some(Field {
                    key: Text::Owned(name?.into()),
                    value: Value::Text(Text::Span(m.start() as u32, m.end() as u32)),
                })
            })
            .collect(),
    };
    Ok(Event::from_parts(line, fields, false, time))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(yaml: &str) -> Decoder {
        let cfg: DecodeConfig = crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize()
            .unwrap();
        Decoder::new(&cfg, &Registry::default(), "test").unwrap()
    }

    #[test]
    fn json_takes_time_from_the_timestamp_field() {
        let mut d = decoder("codec: json\n");
        let e = d
            .decode(
                r#"{"timestamp":"2026-11-25T06:19:15.123456+00:00","m":1}"#.into(),
                5,
            )
            .unwrap();
        assert_eq!(e.time, 1_795_587_555_123_456_000);
        let e = d.decode(r#"{"m":1}"#.into(), 5).unwrap();
        assert_eq!(e.time, 5, "falls back to receive time");
        assert_eq!(d.local_fallback, 1);
    }

    #[test]
    fn bad_lines_are_kept_marked_or_dropped_and_counted() {
        let mut keep = decoder("on_error: keep\n");
        let e = keep.decode(r#"{"level":"INFO","mess"#.into(), 1).unwrap();
        assert_eq!(
            e.get_text("message").as_deref(),
            Some(r#"{"level":"INFO","mess"#)
        );
        assert!(e.get_text(ERROR_FIELD).unwrap().starts_with("invalid JSON"));
        let e = keep.decode("[1,2]".into(), 1).unwrap();
        assert_eq!(
            e.get_text(ERROR_FIELD).as_deref(),
            Some("expected a JSON object, found array")
        );
        assert_eq!(keep.local_errors, [1, 1, 0]);

        let mut drop = decoder("on_error: drop\n");
        assert!(drop.decode("null".into(), 1).is_none());
        assert_eq!(drop.local_errors, [0, 1, 0]);
    }

    #[test]
    fn regex_captures_become_fields() {
        let mut d = decoder(
            "codec: regex\npattern: '^(?P<level>[A-Z]+):\\s+(?P<client>\\S+) - \"(?P<request>[^\"]*)\" (?P<status>\\d+)'\n",
        );
        let e = d
            .decode(
                r#"INFO:     127.0.0.1:52344 - "POST /chat HTTP/1.1" 200 OK"#.into(),
                1,
            )
            .unwrap();
        assert_eq!(e.get_text("level").as_deref(), Some("INFO"));
        assert_eq!(
            e.get_text("request").as_deref(),
            Some("POST /chat HTTP/1.1")
        );
        assert_eq!(e.get_f64("status"), Some(200.0));
        assert!(
            d.decode("no match here".into(), 1)
                .unwrap()
                .get(ERROR_FIELD)
                .is_some()
        );
    }

    #[test]
    fn config_mistakes_name_the_key() {
        let cfg = |y: &str| -> DecodeConfig {
            crate::config::node::Node::parse(y)
                .unwrap()
                .deserialize()
                .unwrap()
        };
        let err = Decoder::check(&cfg("codec: regex\npattern: '(?P<a>'\n")).unwrap_err();
        assert_eq!(err.path, ["pattern"]);
        assert!(err.message.starts_with("invalid regex"), "{}", err.message);
        assert_eq!(
            Decoder::check(&cfg("codec: regex\n")).unwrap_err().path,
            ["codec"]
        );
        assert_eq!(
            Decoder::check(&cfg("timestamp: {format: nope}\n"))
                .unwrap_err()
                .path,
            ["timestamp", "format"]
        );
    }

    #[test]
    fn contained_lines_take_the_runtime_time_and_their_stream() {
        use container::{Envelope, Malformed, Stream};
        let rt = 1_795_587_555_000_000_001;
        let record = Envelope::Record {
            time: rt,
            stream: Stream::Stderr,
        };
        let mut d = decoder("codec: json\ncontainer: cri\n");
        // The line's own timestamp wins.
        let e = d
            .decode_contained(
                r#"{"timestamp":"2026-11-25T06:19:15.123456+00:00","m":1}"#.into(),
                5,
                record,
            )
            .unwrap();
        assert_eq!(e.time, 1_795_587_555_123_456_000);
        assert_eq!(e.get_text("stream").as_deref(), Some("stderr"));
        assert_eq!(e.get_f64("m"), Some(1.0));
        // Without one, the runtime's time, which counts as the line's own.
        let e = d.decode_contained(r#"{"m":1}"#.into(), 5, record).unwrap();
        assert_eq!((e.time, e.timed), (rt, true));
        assert_eq!(d.local_fallback, 0, "not a fallback to the read time");
        // Text that is not JSON follows on_error, with the stream and time.
        let e = d.decode_contained("plain text".into(), 5, record).unwrap();
        assert_eq!(e.get_text("message").as_deref(), Some("plain text"));
        assert!(e.get_text(ERROR_FIELD).unwrap().starts_with("invalid JSON"));
        assert_eq!(e.get_text("stream").as_deref(), Some("stderr"));
        assert_eq!(e.time, rt);
        assert_eq!(d.local_errors, [1, 0, 0]);
        // A line that was no container record at all: kept whole and marked.
        let bad = Envelope::Malformed(Malformed::CriShape);
        let e = d.decode_contained("garbage".into(), 5, bad).unwrap();
        assert_eq!(e.get_text("message").as_deref(), Some("garbage"));
        assert!(
            e.get_text(ERROR_FIELD)
                .unwrap()
                .starts_with("invalid CRI line")
        );
        assert_eq!((e.time, e.get("stream")), (5, None));
        assert_eq!(d.local_envelope_errors, 1);

        let mut drop = decoder("codec: raw\non_error: drop\ncontainer: docker\n");
        assert!(drop.decode_contained("x".into(), 5, bad).is_none());
        let e = drop.decode_contained("x".into(), 5, record).unwrap();
        assert_eq!((e.time, e.timed), (rt, true));
    }

    #[test]
    fn container_formats_are_not_codecs() {
        let err = crate::config::node::Node::parse("codec: cri\n")
            .unwrap()
            .deserialize::<DecodeConfig>()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`cri` is a container format, not a codec: write `container: cri`"),
            "{err}"
        );
        let err = crate::config::node::Node::parse("container: crio\n")
            .unwrap()
            .deserialize::<DecodeConfig>()
            .unwrap_err();
        assert!(err.to_string().contains("did you mean `cri`"), "{err}");
    }
}
