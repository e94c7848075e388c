//! Reading Loki's 400 answers: which entries it refused, and why.
//!
//! Loki stores the valid entries of a request it answers with 400 and names
//! the rejected ones in a plain-text body, a line per failure. Resending the
//! batch would duplicate what was stored, so the sink dead-letters exactly
//! the entries named here. Two families of messages exist:
//!
//! - the ingester's, per stream: `entry with timestamp <t> ignored, reason:
//!   '…',` lines (at most ten listed) followed by `user '…', total ignored: N
//!   out of M for stream: {…}`; when more were ignored than listed and the
//!   reason gives the oldest acceptable timestamp, every entry older than it
//!   is taken as rejected;
//! - the distributor's, per entry or stream: `entry for stream '{…}' has
//!   timestamp too old: <t>, …`, `… too new: <t>`, `Max entry size '…' bytes
//!   exceeded for stream '{…}' while adding an entry with length '<n>'
//!   bytes`, and stream-wide label and metadata problems.
//!
//! A body matching none of them means the whole request was refused.

use std::sync::LazyLock;

use regex::Regex;

/// Which entries of the batch one rejection covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Entries of the stream with exactly this timestamp (ns).
    At(i64),
    /// Entries of the stream older than this timestamp (ns).
    OlderThan(i64),
    /// Entries of the stream in this second (distributor messages print
    /// RFC 3339 without a fraction).
    Second(i64),
    /// Entries of the stream whose line has this many bytes.
    Length(usize),
    /// Entries of the stream whose line is longer than this.
    LongerThan(usize),
    /// Every entry of the stream.
    Stream,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The stream's labels, parsed and sorted by name.
    pub stream: Vec<(String, String)>,
    pub target: Target,
    /// A short class for metrics: too_far_behind, too_old, too_new,
    /// line_too_long, invalid_stream, rejected.
    pub class: &'static str,
    /// Loki's own words.
    pub reason: String,
}

static INGESTER_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^entry with timestamp (.+?) ignored, reason: '(.*)',?$").expect("valid")
});
static INGESTER_SUMMARY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^user '.*?', total ignored: (\d+) out of (\d+) for stream: (\{.*\})$")
        .expect("valid")
});
static OLDEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"oldest acceptable timestamp is: ([^',]+)").expect("valid"));
static TOO_OLD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"entry for stream '(\{.*?\})' has timestamp too old: (.+?), oldest acceptable timestamp is: (.+)$").expect("valid")
});
static TOO_NEW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"entry for stream '(\{.*?\})' has timestamp too new: (.+?)$").expect("valid")
});
static TOO_LONG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Max entry size '(\d+)' bytes exceeded for stream '(\{.*?\})' while adding an entry with length '(\d+)' bytes").expect("valid")
});
static GROUPED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d+ errors like: ").expect("valid"));
static STREAM_WIDE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"stream '(\{.*?\})' (has|includes) ").expect("valid"));

/// Parses a label set `{a="x", b="y\"z"}` into sorted pairs.
pub fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        if name.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((name, value));
    }
    out.sort();
    Some(out)
}

/// Parses a time as Loki writes it in messages: Go's `time.Time.String()`
/// (`2025-01-31 08:00:00.123 +0000 UTC`) or RFC 3339. Nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let p = crate::decode::timestamp::TimeParser {
        format: crate::decode::timestamp::TimeFormat::Iso8601,
        zone: None,
    };
    if let Some(t) = p.parse(crate::event::FieldRef::Text(s)) {
        return Some(t);
    }
    // Go: "<date> <time> <±hhmm> <zone name>", maybe with " m=+…" after it.
    let mut parts = s.split(' ');
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    p.parse(crate::event::FieldRef::Text(&format!(
        "{date}T{time}{offset}"
    )))
}

/// Every rejection in a 400 body.
pub fn parse(body: &str) -> Vec<Rejection> {
    let mut out = Vec::new();
    let mut listed: Vec<(i64, String)> = Vec::new();
    // The distributor groups its errors (`N errors like: <msg>`) and joins
    // them with `; `; the ingester writes a line each.
    let messages = body
        .lines()
        .flat_map(|l| l.split("; "))
        .map(|m| GROUPED.replace(m.trim(), "").into_owned());
    for line in messages {
        let line = line.as_str();
        if let Some(c) = INGESTER_ENTRY.captures(line) {
            if let Some(t) = parse_time(&c[1]) {
                listed.push((t, c[2].to_string()));
            }
            continue;
        }
        if let Some(c) = INGESTER_SUMMARY.captures(line) {
            let Some(stream) = parse_labels(&c[3]) else {
                continue;
            };
            let total: usize = c[1].parse().unwrap_or(0);
            let class = |reason: &str| {
                if reason.contains("too far behind") {
                    "too_far_behind"
                } else {
                    "out_of_order"
                }
            };
            if total > listed.len()
                && let Some((_, reason)) = listed.first()
                && let Some(cut) = OLDEST.captures(reason).and_then(|m| parse_time(&m[1]))
            {
                out.push(Rejection {
                    stream: stream.clone(),
                    target: Target::OlderThan(cut),
                    class: class(reason),
                    reason: reason.clone(),
                });
            }
            for (t, reason) in listed.drain(..) {
                out.push(Rejection {
                    stream: stream.clone(),
                    target: Target::At(t),
                    class: class(&reason),
                    reason,
                });
            }
            continue;
        }
        // Grouped messages name one example: take the rule, not the example.
        let found = if let Some(c) = TOO_OLD.captures(line) {
            parse_labels(&c[1])
                .zip(parse_time(&c[3]))
                .map(|(s, t)| (s, Target::OlderThan(t), "too_old"))
        } else if let Some(c) = TOO_NEW.captures(line) {
            parse_labels(&c[1])
                .zip(parse_time(&c[2]))
                .map(|(s, t)| (s, Target::Second(t.div_euclid(1_000_000_000)), "too_new"))
        } else if let Some(c) = TOO_LONG.captures(line) {
            parse_labels(&c[2]).map(|s| {
                (
                    s,
                    Target::LongerThan(c[1].parse().unwrap_or(usize::MAX)),
                    "line_too_long",
                )
            })
        } else if let Some(c) = STREAM_WIDE.captures(line) {
            parse_labels(&c[1]).map(|s| (s, Target::Stream, "invalid_stream"))
        } else {
            None
        };
        if let Some((stream, target, class)) = found {
            out.push(Rejection {
                stream,
                target,
                class,
                reason: line.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64
    }

    #[test]
    fn labels_parse_with_escapes_in_any_order() {
        assert_eq!(
            parse_labels(r#"{level="INFO", app="a \"b\"\n"}"#),
            Some(vec![
                ("app".into(), "a \"b\"\n".into()),
                ("level".into(), "INFO".into())
            ])
        );
        assert_eq!(parse_labels("{}"), Some(vec![]));
        assert_eq!(parse_labels("nope"), None);
    }

    #[test]
    fn go_and_rfc3339_times() {
        assert_eq!(
            parse_time("2025-01-31 08:00:00.123456789 +0000 UTC"),
            Some(ns("2025-01-31T08:00:00.123456789Z"))
        );
        assert_eq!(
            parse_time("2025-01-31 16:00:00 +0800 CST"),
            Some(ns("2025-01-31T08:00:00Z"))
        );
        assert_eq!(
            parse_time("2025-01-31T08:00:00Z"),
            Some(ns("2025-01-31T08:00:00Z"))
        );
    }

    #[test]
    fn ingester_out_of_order_block() {
        let body = "entry with timestamp 2025-01-31 06:00:00 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2025-01-31T06:00:00Z, oldest acceptable timestamp is: 2025-01-31T07:00:00Z',\n\
                    user 'fake', total ignored: 1 out of 3 for stream: {app=\"api\", level=\"INFO\"}";
        let r = parse(body);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].stream,
            vec![
                ("app".into(), "api".into()),
                ("level".into(), "INFO".into())
            ]
        );
        assert_eq!(r[0].target, Target::At(ns("2025-01-31T06:00:00Z")));
        assert_eq!(r[0].class, "too_far_behind");
    }

    #[test]
    fn more_ignored_than_listed_uses_the_cutoff() {
        let mut body = String::new();
        for i in 0..10 {
            body.push_str(&format!("entry with timestamp 2025-01-31 06:00:0{i} +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2025-01-31T06:00:0{i}Z, oldest acceptable timestamp is: 2025-01-31T07:00:00Z',\n"));
        }
        body.push_str("user 'fake', total ignored: 25 out of 30 for stream: {app=\"api\"}");
        let r = parse(&body);
        assert_eq!(r.len(), 11);
        assert_eq!(r[0].target, Target::OlderThan(ns("2025-01-31T07:00:00Z")));
    }

    #[test]
    fn distributor_messages() {
        let body = "entry for stream '{app=\"api\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2025-01-24T00:00:00Z; \
                    3 errors like: Max entry size '262144' bytes exceeded for stream '{app=\"api\"}' while adding an entry with length '300000' bytes\n\
                    entry for stream '{app=\"web\"}' has timestamp too new: 2030-01-01T00:00:00Z\n\
                    stream '{app=\"x\"}' has label value too long: 'aaaa'";
        let r = parse(body);
        let classes: Vec<&str> = r.iter().map(|r| r.class).collect();
        assert_eq!(
            classes,
            ["too_old", "line_too_long", "too_new", "invalid_stream"]
        );
        assert_eq!(r[0].target, Target::OlderThan(ns("2025-01-24T00:00:00Z")));
        assert_eq!(r[1].target, Target::LongerThan(262_144));
        assert_eq!(
            r[2].target,
            Target::Second(ns("2030-01-01T00:00:00Z") / 1_000_000_000)
        );
        assert_eq!(r[3].target, Target::Stream);
    }

    #[test]
    fn unknown_bodies_yield_nothing() {
        assert!(parse("error at least one label pair is required per stream").is_empty());
    }
}
