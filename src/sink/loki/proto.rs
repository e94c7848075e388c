//! Loki's push request, declared by hand for prost (package `logproto`,
//! field numbers as in Loki's `push.proto`), so no build script or protoc
//! is needed.

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// `{app="api", env="prod"}`
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// google.protobuf.Timestamp
#[derive(Clone, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_nanos(ns: i64) -> Timestamp {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }
}

/// An entry as the encoder borrows it: timestamp (ns), line, metadata.
pub type EntryRef<'a> = (i64, &'a str, &'a [(String, String)]);

fn len_delimited(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        prost::encoding::key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn put_string(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        len_delimited(tag, s.len(), buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

fn timestamp_len(ts: &Timestamp) -> usize {
    let mut n = 0;
    if ts.seconds != 0 {
        n += 1 + encoded_len_varint(ts.seconds as u64);
    }
    if ts.nanos != 0 {
        n += 1 + encoded_len_varint(ts.nanos as i64 as u64);
    }
    n
}

fn entry_len(e: &EntryRef<'_>) -> usize {
    let ts = Timestamp::from_nanos(e.0);
    let tl = timestamp_len(&ts);
    let mut n = 1 + encoded_len_varint(tl as u64) + tl + string_len(2, e.1);
    for (k, v) in e.2 {
        let pl = string_len(1, k) + string_len(2, v);
        n += 1 + encoded_len_varint(pl as u64) + pl;
    }
    n
}

/// Encodes a `PushRequest` straight from borrowed streams, byte for byte
/// what prost would produce from the owned messages, without copying lines.
pub fn encode_push(streams: &[(&str, Vec<EntryRef<'_>>)]) -> Vec<u8> {
    let total: usize = streams
        .iter()
        .map(|(_, es)| es.iter().map(|e| e.1.len() + 24).sum::<usize>() + 64)
        .sum();
    let mut buf = Vec::with_capacity(total);
    for (labels, entries) in streams {
        let lens: Vec<usize> = entries.iter().map(entry_len).collect();
        let stream_len = string_len(1, labels)
            + lens
                .iter()
                .map(|l| 1 + encoded_len_varint(*l as u64) + l)
                .sum::<usize>();
        len_delimited(1, stream_len, &mut buf);
        put_string(1, labels, &mut buf);
        for (e, len) in entries.iter().zip(&lens) {
            len_delimited(2, *len, &mut buf);
            let ts = Timestamp::from_nanos(e.0);
            len_delimited(1, timestamp_len(&ts), &mut buf);
            if ts.seconds != 0 {
                encode_key(1, WireType::Varint, &mut buf);
                encode_varint(ts.seconds as u64, &mut buf);
            }
            if ts.nanos != 0 {
                encode_key(2, WireType::Varint, &mut buf);
                encode_varint(ts.nanos as i64 as u64, &mut buf);
            }
            put_string(2, e.1, &mut buf);
            for (k, v) in e.2 {
                len_delimited(3, string_len(1, k) + string_len(2, v), &mut buf);
                put_string(1, k, &mut buf);
                put_string(2, v, &mut buf);
            }
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoding_equals_prost() {
        let md = vec![
            ("request_id".to_string(), "r1".to_string()),
            ("empty".to_string(), String::new()),
        ];
        let streams = vec![
            (
                "{app=\"a\"}",
                vec![
                    (1_700_000_000_123_456_789i64, "line one", md.as_slice()),
                    (0, "", &[][..]),
                ],
            ),
            (
                "{app=\"b\", level=\"INFO\"}",
                vec![(-1_500_000_000, "before 1970", &[][..])],
            ),
        ];
        let owned = PushRequest {
            streams: streams
                .iter()
                .map(|(l, es)| StreamAdapter {
                    labels: l.to_string(),
                    entries: es
                        .iter()
                        .map(|(ts, line, md)| EntryAdapter {
                            timestamp: Some(Timestamp::from_nanos(*ts)),
                            line: line.to_string(),
                            structured_metadata: md
                                .iter()
                                .map(|(k, v)| LabelPairAdapter {
                                    name: k.clone(),
                                    value: v.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        assert_eq!(encode_push(&streams), owned.encode_to_vec());
    }
}
