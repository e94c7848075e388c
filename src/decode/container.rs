//! Container log envelopes: what a container runtime wraps around each line
//! an application writes to stdout or stderr.
//!
//! - **CRI** (containerd, CRI-O; what the kubelet leaves in
//!   `/var/log/containers/*.log`):
//!   `2026-11-25T06:19:15.123456789Z stdout F {"level":"INFO",…}` — the
//!   runtime's time (RFC 3339, nanoseconds), the stream, a tag (`F` for a
//!   full line, `P` for a part whose line goes on in the stream's next
//!   record; further tags after a `:` are ignored), then the line itself.
//! - **Docker json-file**:
//!   `{"log":"…\n","stream":"stdout","time":"2026-11-25T06:19:15.123456789Z"}`
//!   — a line longer than 16 KiB comes as several records, all but the last
//!   without the trailing `\n` in `log`. Other keys (`attrs`) are ignored.
//! - **auto**: each line is told by its first byte (`{` is Docker's, anything
//!   else CRI's), for nodes whose runtime is not known in advance.
//!
//! This module reads one physical line into a [`Record`]. It deliberately
//! does not join partial records (`source::partial` does, per stream, with
//! the offsets checkpoints need) nor decode the application's line (the
//! source's codec does, as for any other line).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::timestamp::{TimeFormat, TimeParser};
use crate::event::FieldRef;

/// `decode.container`: the envelope around each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerFormat {
    Cri,
    Docker,
    Auto,
}

/// The stream a container line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// 0 or 1, for per-stream state.
    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// Why a line is not a record of its container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than three fields before the content.
    CriShape,
    CriTime,
    CriStream,
    CriTag,
    /// Not a JSON object with string `log`, `stream` and `time`.
    DockerShape,
    DockerTime,
    DockerStream,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::CriShape => {
                "invalid CRI line: expected `TIME STREAM F|P CONTENT`, e.g. `2026-11-25T06:19:15.123456789Z stdout F {…}`"
            }
            Malformed::CriTime => "invalid CRI line: the first field is not an RFC 3339 time",
            Malformed::CriStream => {
                "invalid CRI line: the second field is not `stdout` or `stderr`"
            }
            Malformed::CriTag => "invalid CRI line: the third field is not `F` or `P`",
            Malformed::DockerShape => {
                "invalid Docker json-file line: expected a JSON object with string keys `log`, `stream` and `time`"
            }
            Malformed::DockerTime => {
                "invalid Docker json-file line: `time` is not an RFC 3339 time"
            }
            Malformed::DockerStream => {
                "invalid Docker json-file line: `stream` is not `stdout` or `stderr`"
            }
        })
    }
}

/// What the envelope of a line said, carried with the line from the
/// framing stage to the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// A container line: the runtime's time (ns) and the stream.
    Record { time: i64, stream: Stream },
    /// Not a line of the configured format; the line is kept whole.
    Malformed(Malformed),
}

/// Where a record's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A byte range of the physical line (CRI: no copy needed).
    Span(usize, usize),
    /// Unescaped from JSON (Docker).
    Owned(String),
}

/// One physical line of a container log, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: i64,
    pub stream: Stream,
    /// The line goes on in the stream's next record.
    pub partial: bool,
    pub content: Content,
}

impl Content {
    /// The content as text, given the physical line it was read from.
    pub fn as_str<'a>(&'a self, line: &'a str) -> &'a str {
        match self {
            Content::Span(a, b) => &line[*a..*b],
            Content::Owned(s) => s,
        }
    }

    /// The content as an owned string, reusing the physical line's
    /// allocation when the content is a range of it.
    pub fn into_string(self, mut line: String) -> String {
        match self {
            Content::Span(a, b) => {
                line.truncate(b);
                line.drain(..a);
                line
            }
            Content::Owned(s) => s,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Content::Span(a, b) => b - a,
            Content::Owned(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads one physical line (without its newline) as `format` says.
pub fn parse(format: ContainerFormat, line: &str) -> Result<Record, Malformed> {
    match format {
        ContainerFormat::Cri => parse_cri(line),
        ContainerFormat::Docker => parse_docker(line),
        ContainerFormat::Auto if line.starts_with('{') => parse_docker(line),
        ContainerFormat::Auto => parse_cri(line),
    }
}

fn rfc3339_nanos(s: &str) -> Option<i64> {
    const PARSER: TimeParser = TimeParser {
        format: TimeFormat::Iso8601,
        zone: None,
    };
    PARSER.parse(FieldRef::Text(s))
}

fn parse_cri(line: &str) -> Result<Record, Malformed> {
    let mut fields = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(Malformed::CriShape);
    };
    let time = rfc3339_nanos(time).ok_or(Malformed::CriTime)?;
    let stream = Stream::parse(stream).ok_or(Malformed::CriStream)?;
    let partial = match tag.split(':').next() {
        Some("F") => false,
        Some("P") => true,
        _ => return Err(Malformed::CriTag),
    };
    // The content follows the tag's space; a line may be empty.
    let start = (end_of(line, tag) + 1).min(line.len());
    Ok(Record {
        time,
        stream,
        partial,
        content: Content::Span(start, line.len()),
    })
}

/// Where `tag` (a slice of `line`) ends in `line`.
fn end_of(line: &str, tag: &str) -> usize {
    tag.as_ptr() as usize - line.as_ptr() as usize + tag.len()
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

fn parse_docker(line: &str) -> Result<Record, Malformed> {
    let d: DockerLine<'_> = serde_json::from_str(line).map_err(|_| Malformed::DockerShape)?;
    let time = rfc3339_nanos(&d.time).ok_or(Malformed::DockerTime)?;
    let stream = Stream::parse(&d.stream).ok_or(Malformed::DockerStream)?;
    let mut log = d.log.into_owned();
    let partial = !log.ends_with('\n');
    if !partial {
        log.pop();
        if log.ends_with('\r') {
            log.pop();
        }
    }
    Ok(Record {
        time,
        stream,
        partial,
        content: Content::Owned(log),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_587_555_123_456_789;

    #[test]
    fn cri_full_and_partial_records() {
        let line = r#"2026-11-25T06:19:15.123456789Z stdout F {"a":1}"#;
        let r = parse(ContainerFormat::Cri, line).unwrap();
        assert_eq!((r.time, r.stream, r.partial), (T, Stream::Stdout, false));
        assert_eq!(r.content.as_str(line), r#"{"a":1}"#);
        assert_eq!(r.content.into_string(line.into()), r#"{"a":1}"#);

        let line = "2026-11-25T08:19:15.123456789+02:00 stderr P:x part with  spaces ";
        let r = parse(ContainerFormat::Cri, line).unwrap();
        assert_eq!((r.time, r.stream, r.partial), (T, Stream::Stderr, true));
        assert_eq!(r.content.as_str(line), "part with  spaces ");

        // An empty line: the content is empty, with or without its space.
        for line in [
            "2026-11-25T06:19:15.123456789Z stdout F",
            "2026-11-25T06:19:15.123456789Z stdout F ",
        ] {
            assert!(
                parse(ContainerFormat::Cri, line)
                    .unwrap()
                    .content
                    .is_empty()
            );
        }
    }

    #[test]
    fn cri_mistakes_are_told_apart() {
        let err = |l: &str| parse(ContainerFormat::Cri, l).unwrap_err();
        assert_eq!(err(r#"{"a":1}"#), Malformed::CriShape);
        assert_eq!(err("yesterday stdout F x"), Malformed::CriTime);
        assert_eq!(err("2026-11-25T06:19:15Z stdin F x"), Malformed::CriStream);
        assert_eq!(err("2026-11-25T06:19:15Z stdout X x"), Malformed::CriTag);
        assert!(err("x").to_string().starts_with("invalid CRI line"));
    }

    #[test]
    fn docker_full_and_partial_records() {
        let line = r#"{"log":"{\"a\":\"é\"}\r\n","stream":"stderr","time":"2026-11-25T06:19:15.123456789Z","attrs":{"k":"v"}}"#;
        let r = parse(ContainerFormat::Docker, line).unwrap();
        assert_eq!((r.time, r.stream, r.partial), (T, Stream::Stderr, false));
        assert_eq!(r.content.as_str(line), r#"{"a":"é"}"#);

        let line = r#"{"log":"part","stream":"stdout","time":"2026-11-25T06:19:15.123456789Z"}"#;
        let r = parse(ContainerFormat::Docker, line).unwrap();
        assert!(r.partial);
        assert_eq!(r.content.as_str(line), "part");
    }

    #[test]
    fn docker_mistakes_are_told_apart() {
        let err = |l: &str| parse(ContainerFormat::Docker, l).unwrap_err();
        assert_eq!(err("plain text"), Malformed::DockerShape);
        assert_eq!(
            err(r#"{"log":"x\n","stream":"stdout"}"#),
            Malformed::DockerShape
        );
        assert_eq!(
            err(r#"{"log":"x\n","stream":"stdout","time":"soon"}"#),
            Malformed::DockerTime
        );
        assert_eq!(
            err(r#"{"log":"x\n","stream":"out","time":"2026-11-25T06:19:15Z"}"#),
            Malformed::DockerStream
        );
    }

    #[test]
    fn auto_tells_the_formats_apart_by_the_first_byte() {
        let docker = r#"{"log":"x\n","stream":"stdout","time":"2026-11-25T06:19:15Z"}"#;
        let cri = "2026-11-25T06:19:15Z stdout F x";
        for line in [docker, cri] {
            let r = parse(ContainerFormat::Auto, line).unwrap();
            assert_eq!(r.content.as_str(line), "x");
        }
        assert_eq!(
            parse(ContainerFormat::Auto, "{not json").unwrap_err(),
            Malformed::DockerShape
        );
    }
}
