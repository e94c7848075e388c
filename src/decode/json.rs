//! JSON objects, one per line, decoded into byte ranges of the line.
//!
//! Most lines take the fast path in `scan`. The others, and every line that
//! is not valid, go through serde_json, which is the reference: it gives the
//! error messages, and the fast path is held to its answers. serde_json
//! validates the whole line; each top-level value is captured as a
//! borrowed `RawValue`, so nested objects, numbers and strings are located but
//! not copied. Keys without escapes are ranges too. Only top-level fields are
//! indexed; nested paths are read on demand by whoever needs them.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Event, Field, Text, Value};

/// Why a line is not a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonError {
    /// Not JSON at all, or cut short; the text says where.
    Invalid(String),
    /// Valid JSON but not an object (`null`, `[1,2]`, `"text"`, `42`).
    NotAnObject(&'static str),
}

struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Collects (key, raw value) pairs of a top-level object as ranges of `base`.
struct ObjectVisitor<'a> {
    base: usize,
    fields: &'a mut Vec<Field>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let key = match key {
                Cow::Borrowed(k) => {
                    let start = k.as_ptr() as usize - self.base;
                    Text::Span(start as u32, (start + k.len()) as u32)
                }
                Cow::Owned(k) => Text::Owned(k.into_boxed_str()),
            };
            let v = raw.get();
            let start = v.as_ptr() as usize - self.base;
            self.fields.push(Field {
                key,
                value: Value::Json(start as u32, (start + v.len()) as u32),
            });
        }
        Ok(())
    }
}

/// Decodes `line` as one JSON object. The event's time is left at `time`.
/// On failure the line is handed back with the reason.
pub fn decode_object(line: String, time: i64) -> Result<Event, (JsonError, String)> {
    decode_object_sized(line, time, 16)
}

/// [`decode_object`] with room for `fields` fields: a source's lines mostly
/// have as many as the one before, so it needs no reallocation.
pub fn decode_object_sized(
    line: String,
    time: i64,
    fields: usize,
) -> Result<Event, (JsonError, String)> {
    let mut fields = Vec::with_capacity(fields);
    if super::scan::index_object(&line, &mut fields) {
        return Ok(Event::from_parts(line, fields, true, time));
    }
    decode_with_serde(line, fields, time)
}

/// The reference decoder: what [`decode_object`] answers for every line its
/// fast path gives up on, and the oracle the fast path is tested against.
pub fn decode_with_serde(
    line: String,
    mut fields: Vec<Field>,
    time: i64,
) -> Result<Event, (JsonError, String)> {
    fields.clear();
    let result = {
        let mut de = serde_json::Deserializer::from_str(&line);
        let visitor = ObjectVisitor {
            base: line.as_ptr() as usize,
            fields: &mut fields,
        };
        de.deserialize_map(visitor).and_then(|()| de.end())
    };
    match result {
        Ok(()) => Ok(Event::from_parts(line, fields, true, time)),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            let kind = match line.trim_start().as_bytes().first() {
                Some(b'[') => "array",
                Some(b'"') => "string",
                Some(b'n') => "null",
                Some(b't' | b'f') => "boolean",
                _ => "number",
            };
            Err((JsonError::NotAnObject(kind), line))
        }
        Err(e) => Err((JsonError::Invalid(e.to_string()), line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_utf8_and_nested_values() {
        let line = r#"{"message":"工具调用完成","extra":{"k":[1,{"x":"y"}]},"taskName":null}"#;
        let e = decode_object(line.to_string(), 0).unwrap();
        assert_eq!(e.get_text("message").as_deref(), Some("工具调用完成"));
        assert_eq!(
            e.get("extra"),
            Some(crate::event::FieldRef::Json(r#"{"k":[1,{"x":"y"}]}"#))
        );
        assert!(e.get("taskName").unwrap().is_null());
    }

    #[test]
    fn escaped_keys_are_unescaped() {
        let e = decode_object(r#"{"a\u0062":1}"#.to_string(), 0).unwrap();
        assert_eq!(e.get_f64("ab"), Some(1.0));
    }

    #[test]
    fn non_objects_and_broken_lines_are_told_apart() {
        let err = |l: &str| decode_object(l.to_string(), 0).unwrap_err();
        assert_eq!(err("null"), (JsonError::NotAnObject("null"), "null".into()));
        assert_eq!(err("[1,2]").0, JsonError::NotAnObject("array"));
        assert!(
            matches!(err(r#"{"a":"unterminated"#).0, JsonError::Invalid(m) if m.contains("EOF"))
        );
        assert!(matches!(
            err(r#"{"a":1} trailing"#).0,
            JsonError::Invalid(_)
        ));
    }
}
