//! The event: one decoded log record, and the batch that carries events between
//! components.
//!
//! An event keeps the line as it was read and describes its fields as byte
//! ranges into that line wherever it can, so decoding a JSON line does not
//! allocate a string per field. Fields become owned only when a transform
//! writes them. An event that nobody changed is written out as the original line.
//!
//! This module does not decide how lines are decoded (see `decode`) nor how
//! events are encoded for a particular sink.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use crate::ack::Ack;

/// Text that lives either inside the event's line or on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// A byte range of the line; the bytes are the text itself (no escapes).
    Span(u32, u32),
    Owned(Box<str>),
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A byte range of the line holding a JSON value exactly as written
    /// (strings keep their quotes and escapes).
    Json(u32, u32),
    /// Plain text, such as a regex capture or the whole line.
    Text(Text),
    /// A value set by weir itself or by a transform.
    Owned(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: Text,
    pub value: Value,
}

/// A borrowed view of a field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    Json(&'a str),
    Text(&'a str),
    Owned(&'a serde_json::Value),
}

/// Where an event was read: which file (by content fingerprint) and the
/// offset just past its last line. Stable across restarts, so sinks can
/// derive idempotent document ids from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub file: u64,
    pub offset: u64,
}

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    line: String,
    fields: Vec<Field>,
    /// True while the fields are exactly the JSON object in `line`, so the
    /// line itself is the event's JSON encoding.
    verbatim: bool,
    /// Event time, nanoseconds since the Unix epoch (UTC).
    pub time: i64,
    /// Whether `time` came from the line itself (its timestamp field)
    /// rather than from when it was read; a back-test's clock follows
    /// only those.
    pub timed: bool,
    /// Set by file sources.
    pub origin: Option<Origin>,
}

impl Event {
    /// An event whose only field is `message`: the whole line.
    pub fn from_text(line: String, time: i64) -> Event {
        let len = line.len() as u32;
        Event {
            line,
            fields: vec![Field {
                key: Text::Owned("message".into()),
                value: Value::Text(Text::Span(0, len)),
            }],
            verbatim: false,
            time,
            timed: false,
            origin: None,
        }
    }

    /// An event built from a line and fields already located in it.
    /// `verbatim` says the line is itself the JSON encoding of the fields.
    pub fn from_parts(line: String, fields: Vec<Field>, verbatim: bool, time: i64) -> Event {
        Event {
            line,
            fields,
            verbatim,
            time,
            timed: false,
            origin: None,
        }
    }

    /// The event as its parts, for the disk buffer's record encoding:
    /// the line, the fields, and whether the line is their JSON encoding.
    pub fn raw_parts(&self) -> (&str, &[Field], bool) {
        (&self.line, &self.fields, self.verbatim)
    }

    /// An event rebuilt from [`Event::raw_parts`] read back from disk.
    /// Every span is checked against the line, so a damaged record is an
    /// error and never a panic later.
    pub(crate) fn from_raw_parts(
        line: String,
        fields: Vec<Field>,
        verbatim: bool,
        time: i64,
    ) -> Result<Event, String> {
        let ok = |a: u32, b: u32| {
            a <= b
                && (b as usize) <= line.len()
                && line.is_char_boundary(a as usize)
                && line.is_char_boundary(b as usize)
        };
        let span_ok = |t: &Text| match t {
            Text::Span(a, b) => ok(*a, *b),
            Text::Owned(_) => true,
        };
        for f in &fields {
            let value_ok = match &f.value {
                Value::Json(a, b) => ok(*a, *b),
                Value::Text(t) => span_ok(t),
                Value::Owned(_) => true,
            };
            if !span_ok(&f.key) || !value_ok {
                return Err("a field points outside its line".into());
            }
        }
        Ok(Event {
            line,
            fields,
            verbatim,
            time,
            timed: false,
            origin: None,
        })
    }

    /// The line as read, without its line ending.
    pub fn line(&self) -> &str {
        &self.line
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldRef<'_>)> {
        self.fields
            .iter()
            .map(|f| (self.text(&f.key), self.value_ref(&f.value)))
    }

    fn text<'a>(&'a self, t: &'a Text) -> &'a str {
        match t {
            Text::Span(a, b) => &self.line[*a as usize..*b as usize],
            Text::Owned(s) => s,
        }
    }

    fn value_ref<'a>(&'a self, v: &'a Value) -> FieldRef<'a> {
        match v {
            Value::Json(a, b) => FieldRef::Json(&self.line[*a as usize..*b as usize]),
            Value::Text(t) => FieldRef::Text(self.text(t)),
            Value::Owned(v) => FieldRef::Owned(v),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        // Later duplicates win, as in every JSON parser users compare with.
        // This runs several times per event per rule: keys are compared as
        // bytes (no char-boundary checks) and without a call to memcmp.
        let want = key.as_bytes();
        let line = self.line.as_bytes();
        self.fields.iter().rposition(|f| match &f.key {
            Text::Span(a, b) => {
                (b - a) as usize == want.len() && same_bytes(&line[*a as usize..*b as usize], want)
            }
            Text::Owned(k) => k.as_bytes() == want,
        })
    }

    /// The value of a top-level field.
    pub fn get(&self, key: &str) -> Option<FieldRef<'_>> {
        self.position(key)
            .map(|i| self.value_ref(&self.fields[i].value))
    }

    /// A field as text: strings unescaped, numbers and booleans as written,
    /// `null`, objects and arrays as `None`.
    pub fn get_text(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key)?.as_text()
    }

    /// A field as a number: JSON numbers, and strings that hold one.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    /// Sets a field, replacing an existing one of the same name.
    pub fn insert(&mut self, key: &str, value: serde_json::Value) {
        self.verbatim = false;
        match self.position(key) {
            Some(i) => self.fields[i].value = Value::Owned(value),
            None => self.fields.push(Field {
                key: Text::Owned(key.into()),
                value: Value::Owned(value),
            }),
        }
    }

    /// Removes a field; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.fields.len();
        let line = &self.line;
        self.fields.retain(|f| {
            let k = match &f.key {
                Text::Span(a, b) => &line[*a as usize..*b as usize],
                Text::Owned(s) => s,
            };
            k != key
        });
        let removed = self.fields.len() != before;
        if removed {
            self.verbatim = false;
        }
        removed
    }

    /// Appends the event as one line of JSON (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if self.verbatim {
            out.extend_from_slice(self.line.as_bytes());
            return;
        }
        out.push(b'{');
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, self.text(&f.key));
            out.push(b':');
            match self.value_ref(&f.value) {
                FieldRef::Json(raw) => out.extend_from_slice(raw.as_bytes()),
                FieldRef::Text(s) => write_json_str(out, s),
                FieldRef::Owned(v) => {
                    serde_json::to_writer(&mut *out, v).expect("writing JSON to a Vec")
                }
            }
        }
        out.push(b'}');
    }
}

impl<'a> FieldRef<'a> {
    pub fn as_text(self) -> Option<Cow<'a, str>> {
        match self {
            FieldRef::Text(s) => Some(Cow::Borrowed(s)),
            FieldRef::Json(raw) => json_scalar_text(raw),
            FieldRef::Owned(v) => match v {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
                serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
                serde_json::Value::Bool(b) => {
                    Some(Cow::Borrowed(if *b { "true" } else { "false" }))
                }
                _ => None,
            },
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        match self {
            FieldRef::Owned(serde_json::Value::Number(n)) => n.as_f64(),
            FieldRef::Json(raw) if !raw.starts_with('"') => raw.parse().ok(),
            other => other.as_text()?.trim().parse().ok(),
        }
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(self) -> bool {
        matches!(
            self,
            FieldRef::Json("null") | FieldRef::Owned(serde_json::Value::Null)
        )
    }
}

fn json_scalar_text(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first()? {
        b'"' => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        b'{' | b'[' | b'n' => None,
        _ => Some(Cow::Borrowed(raw)),
    }
}

/// Writes `s` as a JSON string literal. Non-ASCII text is kept as is.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_json_str_body(out, s);
    out.push(b'"');
}

/// Writes the body of a JSON string: `"` `\` and control characters escaped, the rest
/// (non-ASCII included) raw.
pub fn write_json_str_body(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Fast path: a branch-free scan (vectorizes) finds nothing to escape.
    let special = |c: u8| c < 0x20 || c == b'"' || c == b'\\';
    if !b.iter().fold(false, |acc, &c| acc | special(c)) {
        out.extend_from_slice(b);
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let rep: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                let hex = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(hex[usize::from(c >> 4)]);
                out.push(hex[usize::from(c & 0xF)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// Events moving together between components, with the acknowledgement
/// their source waits for (see `ack`).
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub ack: Option<Ack>,
}

/// What travels through the topology's channels: the events of one batch,
/// shared by all the components downstream of a fan-out, and this
/// component's own acknowledgement, which it must settle.
#[derive(Debug)]
pub struct SharedBatch {
    pub events: Arc<Vec<Event>>,
    pub ack: Option<Ack>,
}

impl SharedBatch {
    /// This component is done with the batch: delivered, set aside, or
    /// dropped on purpose.
    pub fn delivered(self) {
        if let Some(a) = self.ack {
            a.delivered();
        }
    }

    /// The events as this component's own, copied only if another component
    /// still shares them.
    pub fn into_batch(self) -> Batch {
        Batch {
            events: Arc::unwrap_or_clone(self.events),
            ack: self.ack,
        }
    }
}

/// `a == b` for two slices of the same length, inline: keys are short, and
/// most differ in their first or last eight bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    match a.len() {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        n => {
            word(a, 0) == word(b, 0)
                && word(a, n - 8) == word(b, n - 8)
                && (n <= 16 || a[8..n - 8] == b[8..n - 8])
        }
    }
}

/// The byte range type used by decoders to build spans.
pub fn span(r: Range<usize>) -> (u32, u32) {
    (r.start as u32, r.end as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_event(line: &str) -> Event {
        crate::decode::json::decode_object(line.to_string(), 0).expect("valid object")
    }

    #[test]
    fn unchanged_event_is_written_as_read() {
        let line = r#"{"message":"用户会话开始","n":1, "nested":{"a":[1,2]}}"#;
        let e = json_event(line);
        let mut out = Vec::new();
        e.write_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), line);
    }

    #[test]
    fn fields_read_without_copies_and_unescape_on_demand() {
        let e = json_event(r#"{"a":"x\"y","b":2.5,"c":true,"d":null,"e":{"f":1}}"#);
        assert_eq!(e.get_text("a").as_deref(), Some("x\"y"));
        assert_eq!(e.get_f64("b"), Some(2.5));
        assert_eq!(e.get_text("c").as_deref(), Some("true"));
        assert!(e.get("d").unwrap().is_null());
        assert_eq!(e.get_text("e"), None);
        assert_eq!(e.get("e"), Some(FieldRef::Json(r#"{"f":1}"#)));
        assert_eq!(e.get("zz"), None);
    }

    #[test]
    fn edits_re_encode_the_fields() {
        let mut e = json_event(r#"{"a":1,"b":"two"}"#);
        e.insert("c", serde_json::json!("new\nline"));
        assert!(e.remove("a"));
        let mut out = Vec::new();
        e.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"b":"two","c":"new\nline"}));
    }

    #[test]
    fn keys_compare_equal_only_when_every_byte_is() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len as u8).map(|i| b'a' + i % 26).collect();
            assert!(same_bytes(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "len {len}, differing at {at}");
            }
        }
        let e = json_event(r#"{"request_id":1,"request_ix":2,"a":3,"a":4}"#);
        assert_eq!(e.get_f64("request_ix"), Some(2.0));
        assert_eq!(e.get_f64("a"), Some(4.0));
        assert_eq!(e.get_f64("request_i"), None);
    }

    #[test]
    fn text_events_escape_control_characters() {
        let e = Event::from_text("tab\there \"q\" \u{1}".into(), 0);
        let mut out = Vec::new();
        e.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "tab\there \"q\" \u{1}");
    }
}
