//! The fake Loki (crates/testkit/src/loki.rs) against hand-built requests: what it
//! stores, what it answers, byte for byte where Loki's answer is known.

use weir_testkit::loki;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loki::{FakeConfig, FakeLoki, StoredEntry, encode_protobuf};

/// 2025-01-31T08:00:00.123456789Z
const T: i64 = 1_738_310_400_123_456_789;
const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A fake that accepts fixed 2025 timestamps.
fn timeless() -> FakeLoki {
    FakeLoki::with_config(FakeConfig {
        reject_old_samples: false,
        ..FakeConfig::default()
    })
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

fn request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one response with a Content-Length (or none, for 204) off `s`.
fn read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn try_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&request_bytes(addr, method, path, headers, body, true))?;
    read_response(&mut s)
}

fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_send(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn push_proto(fake: &FakeLoki, streams: &[(&str, &[StoredEntry])]) -> Resp {
    send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/x-protobuf")],
        &encode_protobuf(streams),
    )
}

fn push_json(fake: &FakeLoki, body: &serde_json::Value, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &headers,
        body.to_string().as_bytes(),
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(fake: &FakeLoki, q: &str, params: &str, headers: &[(&str, &str)]) -> Resp {
    let path = format!("/loki/api/v1/query_range?query={}{params}", url_encode(q));
    send(&fake.addr, "GET", &path, headers, b"")
}

fn e(ts: i64, line: &str) -> StoredEntry {
    StoredEntry::new(ts, line)
}

#[test]
fn go_time_formats() {
    assert_eq!(
        loki::go_time_string(T as i128),
        "2025-01-31 08:00:00.123456789 +0000 UTC"
    );
    assert_eq!(
        loki::go_time_string(1_738_310_400_000_000_000),
        "2025-01-31 08:00:00 +0000 UTC"
    );
    assert_eq!(
        loki::go_time_string(1_738_310_400_100_000_000),
        "2025-01-31 08:00:00.1 +0000 UTC"
    );
    assert_eq!(loki::go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
    assert_eq!(
        loki::go_time_string(-1),
        "1969-12-31 23:59:59.999999999 +0000 UTC"
    );
    assert_eq!(
        loki::go_time_string(951_782_400_000_000_000),
        "2000-02-29 00:00:00 +0000 UTC"
    );
    assert_eq!(loki::rfc3339(T as i128), "2025-01-31T08:00:00Z");
    assert_eq!(
        loki::rfc3339(4_102_444_799_999_999_999),
        "2099-12-31T23:59:59Z"
    );
}

#[test]
fn label_strings_parse_like_promql_and_print_like_prometheus() {
    let l = loki::parse_labels(r#"{env="prod",app="api", msg="a\"b\\c\nd", empty=""}"#).unwrap();
    assert_eq!(
        loki::labels_string(&l),
        r#"{app="api", env="prod", msg="a\"b\\c\nd"}"#
    );
    let l = loki::parse_labels("{ a = 'x\\'y' , b=`raw\\n` , c=\"\\u00e9\\x41\" , }").unwrap();
    assert_eq!(loki::labels_string(&l), r#"{a="x'y", b="raw\\n", c="éA"}"#);
    assert_eq!(
        loki::labels_string(&loki::parse_labels(r#"{a="tab\there\u00a0"}"#).unwrap()),
        r#"{a="tab\there\u00a0"}"#
    );
    for bad in [
        r#"{app=api}"#,
        r#"{1app="x"}"#,
        r#"{app="x""#,
        r#"{app!="x"}"#,
        r#"app="x""#,
        r#"{a="\q"}"#,
        r#"{a="x"} b"#,
    ] {
        assert!(loki::parse_labels(bad).is_err(), "{bad}");
    }
    assert!(loki::parse_labels("{}").unwrap().is_empty());
}

#[test]
fn protobuf_push_is_stored_and_queryable() {
    let fake = FakeLoki::start();
    let now = now_ns();
    let a = [
        e(now - 3 * MIN, "first")
            .with("trace_id", "0af7")
            .with("user.id", "42"),
        e(now - 2 * MIN, "second"),
        e(now - MIN, "third"),
    ];
    let b = [e(now - 90_000_000_000, "other")];
    let r = push_proto(
        &fake,
        &[
            (r#"{env="prod", app="api"}"#, &a),
            (r#"{app="worker"}"#, &b),
        ],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());

    let streams = fake.streams();
    assert_eq!(
        streams.keys().collect::<Vec<_>>(),
        [r#"{app="api", env="prod"}"#, r#"{app="worker"}"#]
    );
    let api = &streams[r#"{app="api", env="prod"}"#];
    assert_eq!(
        api.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    assert_eq!(api[0].ts_ns, now - 3 * MIN);
    // Metadata names normalised like Loki's distributor does.
    assert_eq!(
        api[0].metadata,
        [
            ("trace_id".to_string(), "0af7".to_string()),
            ("user_id".to_string(), "42".to_string())
        ]
    );
    assert_eq!(fake.entry_count(), 4);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status, 204);
    assert_eq!(
        reqs[0].content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(reqs[0].content_encoding, None);
    assert_eq!((reqs[0].entries, reqs[0].stored), (4, 4));
    assert_eq!(
        reqs[0].body,
        encode_protobuf(&[
            (r#"{env="prod", app="api"}"#, &a),
            (r#"{app="worker"}"#, &b)
        ])
    );

    // Newest first by default.
    let q = query(&fake, r#"{app="api"}"#, "", &[]);
    assert_eq!(q.status, 200, "{}", q.text());
    let v = q.json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1);
    assert_eq!(
        result[0]["stream"],
        serde_json::json!({"app": "api", "env": "prod"})
    );
    let values: Vec<(String, String)> = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ((now - MIN).to_string(), "third".to_string()),
            ((now - 2 * MIN).to_string(), "second".to_string()),
            ((now - 3 * MIN).to_string(), "first".to_string()),
        ]
    );

    // limit, forward, start inclusive and end exclusive, line filters.
    let v = query(&fake, r#"{app="api"}"#, "&limit=2&direction=forward", &[]).json();
    let lines: Vec<&str> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["first", "second"]);
    let range = format!("&start={}&end={}", now - 2 * MIN, now - MIN);
    let v = query(&fake, r#"{app="api"}"#, &range, &[]).json();
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        1
    );
    assert_eq!(v["data"]["result"][0]["values"][0][1], "second");
    let v = query(&fake, r#"{app="api", env!="dev"} |= "ir" != "th""#, "", &[]).json();
    assert_eq!(v["data"]["result"][0]["values"][0][1], "first");
    let v = query(&fake, r#"{app="nothing"}"#, "", &[]).json();
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    assert_eq!(query(&fake, r#"{app=""}"#, "", &[]).status, 400);
    assert_eq!(
        query(&fake, r#"{app="api"}"#, "&limit=5001", &[]).status,
        400
    );

    let ready = send(&fake.addr, "GET", "/ready", &[], b"");
    assert_eq!((ready.status, ready.text().trim()), (200, "ready"));
    assert_eq!(send(&fake.addr, "GET", "/nope", &[], b"").status, 404);
    assert_eq!(
        send(&fake.addr, "GET", "/loki/api/v1/push", &[], b"").status,
        405
    );
}

#[test]
fn json_push_with_gzip_and_metadata() {
    let fake = FakeLoki::start();
    let now = now_ns();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "api", "level": "INFO"}, "values": [
            [(now - MIN).to_string(), "one", {"trace_id": "0af7"}],
            [(now - 30_000_000_000).to_string(), "用户会话开始 two"],
        ]},
    ]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Authorization", "Bearer t0k"),
        ],
        &gz,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let s = fake.streams();
    let entries = &s[r#"{app="api", level="INFO"}"#];
    assert_eq!(entries[0], e(now - MIN, "one").with("trace_id", "0af7"));
    assert_eq!(entries[1], e(now - 30_000_000_000, "用户会话开始 two"));
    let req = &fake.requests()[0];
    assert_eq!(req.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(req.authorization.as_deref(), Some("Bearer t0k"));
    assert_eq!(req.body, gz);
    assert_eq!(req.entries, 2);
    let v = query(&fake, r#"{level="INFO"}"#, "", &[]).json();
    assert_eq!(
        v["data"]["result"][0]["values"][0][1], "用户会话开始 two",
        "newest first"
    );

    // Raw DEFLATE, as Go's compress/flate reads it; zlib is not that.
    let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let body = serde_json::json!({"streams": [{"stream": {"app": "api"}, "values": [[now.to_string(), "deflated"]]}]});
    d.write_all(body.to_string().as_bytes()).unwrap();
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "deflate"),
    ];
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &headers,
        &d.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(body.to_string().as_bytes()).unwrap();
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &headers,
        &z.finish().unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let r = push_json(&fake, &body, &[("Content-Encoding", "br")]);
    assert_eq!(
        (r.status, r.text()),
        (400, "Content-Encoding \"br\" not supported\n".to_string())
    );
    assert_eq!(fake.entry_count(), 3);
}

#[test]
fn json_numeric_timestamp_is_a_400() {
    let fake = FakeLoki::start();
    let now = now_ns();
    let body = serde_json::json!({"streams": [{"stream": {"app": "api"}, "values": [
        [now.to_string(), "fine"],
        [now, "numeric"],
    ]}]});
    let r = push_json(&fake, &body, &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("ReadString"), "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        fake.entry_count(),
        0,
        "a body that does not decode stores nothing"
    );
    assert_eq!(fake.requests()[0].status, 400);

    let body =
        serde_json::json!({"streams": [{"stream": {"app": "api"}, "values": [["12e3", "x"]]}]});
    let r = push_json(&fake, &body, &[]);
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains(r#"strconv.ParseInt: parsing "12e3": invalid syntax"#),
        "{}",
        r.text()
    );
}

#[test]
fn entries_too_far_behind_get_lokis_body_and_the_rest_is_stored() {
    let fake = timeless();
    assert_eq!(
        push_proto(&fake, &[(r#"{app="api", env="prod"}"#, &[e(T, "newest")])]).status,
        204
    );
    let batch = [
        e(T - 2 * HOUR, "behind 1"),
        e(T - 30 * MIN, "in the window"),
        e(1_738_303_200_000_000_000, "behind 2"), // 06:00:00 sharp
        e(T + 1_000_000_000, "newer"),            // moves the window within the batch
        e(1_738_299_599_100_000_000, "behind 3"), // 04:59:59.1
    ];
    let r = push_proto(&fake, &[(r#"{env="prod",app="api"}"#, &batch)]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "entry with timestamp 2025-01-31 06:00:00.123456789 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2025-01-31T06:00:00Z, oldest acceptable timestamp is: 2025-01-31T07:00:00Z',\n\
         entry with timestamp 2025-01-31 06:00:00 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2025-01-31T06:00:00Z, oldest acceptable timestamp is: 2025-01-31T07:00:00Z',\n\
         entry with timestamp 2025-01-31 04:59:59.1 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2025-01-31T04:59:59Z, oldest acceptable timestamp is: 2025-01-31T07:00:01Z',\n\
         user 'fake', total ignored: 3 out of 5 for stream: {app=\"api\", env=\"prod\"}\n"
    );
    let lines: Vec<String> = fake.streams()[r#"{app="api", env="prod"}"#]
        .iter()
        .map(|e| e.line.clone())
        .collect();
    assert_eq!(lines, ["newest", "in the window", "newer"]);
    assert_eq!(fake.requests()[1].stored, 2);

    // At most ten listed, all counted.
    let many: Vec<StoredEntry> = (0..12)
        .map(|i| e(T - 3 * HOUR + i, &format!("old {i}")))
        .collect();
    let r = push_proto(&fake, &[(r#"{app="api", env="prod"}"#, &many)]);
    assert_eq!(r.status, 400);
    let text = r.text();
    assert_eq!(text.matches("ignored, reason:").count(), 10);
    assert!(
        text.ends_with(
            "user 'fake', total ignored: 12 out of 12 for stream: {app=\"api\", env=\"prod\"}\n"
        ),
        "{text}"
    );
}

#[test]
fn only_the_last_streams_error_is_answered_like_loki() {
    let fake = timeless();
    let first = [e(T, "a")];
    assert_eq!(
        push_proto(&fake, &[(r#"{app="a"}"#, &first), (r#"{app="b"}"#, &first)]).status,
        204
    );
    // Stream a refuses an entry, stream b (last) is fine: Loki says 204.
    let r = push_proto(
        &fake,
        &[
            (r#"{app="a"}"#, &[e(T - 2 * HOUR, "old a")]),
            (r#"{app="b"}"#, &[e(T + 1, "b")]),
        ],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        fake.streams()[r#"{app="a"}"#].len(),
        1,
        "refused all the same"
    );
    // The other way round, the answer names stream b only.
    let r = push_proto(
        &fake,
        &[
            (r#"{app="a"}"#, &[e(T + 2, "a2")]),
            (r#"{app="b"}"#, &[e(T - 2 * HOUR, "old b")]),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .ends_with("total ignored: 1 out of 1 for stream: {app=\"b\"}\n"),
        "{}",
        r.text()
    );

    // report_every_stream (not Loki) names both, after the distributor's.
    let fake = FakeLoki::with_config(FakeConfig {
        reject_old_samples: false,
        report_every_stream: true,
        max_line_size: 5,
        ..FakeConfig::default()
    });
    assert_eq!(
        push_proto(&fake, &[(r#"{app="a"}"#, &first), (r#"{app="b"}"#, &first)]).status,
        204
    );
    let r = push_proto(
        &fake,
        &[
            (
                r#"{app="a"}"#,
                &[e(T - 2 * HOUR, "old a"), e(T + 3, "too long")],
            ),
            (r#"{app="b"}"#, &[e(T - 2 * HOUR, "old b")]),
        ],
    );
    assert_eq!(r.status, 400);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Max entry size '5' bytes exceeded for stream '{app=\"a\"}' while adding an entry with length '8' bytes"
    );
    assert!(
        lines[2].ends_with("total ignored: 1 out of 1 for stream: {app=\"a\"}"),
        "{text}"
    );
    assert!(
        lines[4].ends_with("total ignored: 1 out of 1 for stream: {app=\"b\"}"),
        "{text}"
    );
}

#[test]
fn distributor_rejections_are_grouped_and_the_valid_entries_stored() {
    let fake = FakeLoki::with_config(FakeConfig {
        max_line_size: 10,
        ..FakeConfig::default()
    });
    let now = now_ns() / 1_000_000_000 * 1_000_000_000;
    let too_new = now + HOUR;
    let too_old = now - 200 * HOUR;
    let batch = [
        e(now - MIN, "ok"),
        e(now - MIN, "far too long"),
        e(now - MIN, "also too long"),
        e(too_new, "future"),
        e(too_old, "past"),
        e(now - 2 * MIN, "ok too"),
    ];
    let r = push_proto(&fake, &[(r#"{app="api"}"#, &batch)]);
    assert_eq!(r.status, 400);
    let text = r.text();
    let parts: Vec<&str> = text.trim_end().split("; ").collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert_eq!(
        parts[0],
        "1 errors like: Max entry size '10' bytes exceeded for stream '{app=\"api\"}' while adding an entry with length '12' bytes"
    );
    assert_eq!(
        parts[2],
        format!(
            "1 errors like: entry for stream '{{app=\"api\"}}' has timestamp too new: {}",
            loki::rfc3339(too_new as i128)
        )
    );
    assert!(
        parts[3].starts_with(&format!(
            "1 errors like: entry for stream '{{app=\"api\"}}' has timestamp too old: {}, oldest acceptable timestamp is: ",
            loki::rfc3339(too_old as i128)
        )),
        "{text}"
    );
    let lines: Vec<String> = fake.streams()[r#"{app="api"}"#]
        .iter()
        .map(|e| e.line.clone())
        .collect();
    assert_eq!(lines, ["ok", "ok too"]);

    // The same message twice is counted; a single one is the body as is.
    let r = push_proto(
        &fake,
        &[(
            r#"{app="api"}"#,
            &[e(now, "0123456789A"), e(now, "0123456789A")],
        )],
    );
    assert_eq!(
        r.text(),
        "2 errors like: Max entry size '10' bytes exceeded for stream '{app=\"api\"}' while adding an entry with length '11' bytes\n"
    );
    let r = push_proto(&fake, &[(r#"{app="api"}"#, &[e(now, "0123456789A")])]);
    assert_eq!(
        r.text(),
        "Max entry size '10' bytes exceeded for stream '{app=\"api\"}' while adding an entry with length '11' bytes\n"
    );

    // Stream-wide problems drop the stream, other streams go on.
    let sixteen: String = (0..16)
        .map(|i| format!("l{i}=\"v\""))
        .collect::<Vec<_>>()
        .join(",");
    let sixteen = format!("{{{sixteen}}}");
    let r = push_proto(
        &fake,
        &[
            (&sixteen, &[e(now, "x")]),
            (r#"{app="fine"}"#, &[e(now, "y")]),
        ],
    );
    assert_eq!(
        r.text(),
        format!("entry for stream '{sixteen}' has 16 label names; limit 15\n")
    );
    assert_eq!(fake.streams()[r#"{app="fine"}"#].len(), 1);
    let r = push_proto(&fake, &[(r#"{a="1", a="2"}"#, &[e(now, "x")])]);
    assert_eq!(
        r.text(),
        "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'\n"
    );
    let r = push_proto(&fake, &[(r#"{}"#, &[e(now, "x")])]);
    assert_eq!(
        r.text(),
        "error at least one label pair is required per stream\n"
    );
    let r = push_proto(&fake, &[(r#"{app=""}"#, &[e(now, "x")])]);
    assert_eq!(
        r.text(),
        "error at least one label pair is required per stream\n",
        "empty values are dropped"
    );
    // A label string that does not parse fails the whole request.
    let r = push_proto(
        &fake,
        &[
            (r#"{app="ok"}"#, &[e(now, "x")]),
            (r#"{app=api}"#, &[e(now, "y")]),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("couldn't parse labels: "),
        "{}",
        r.text()
    );
    assert!(!fake.streams().contains_key(r#"{app="ok"}"#));
    // No streams at all.
    let r = push_proto(&fake, &[]);
    assert_eq!(
        (r.status, r.text()),
        (
            422,
            "error at least one valid stream is required for ingestion\n".to_string()
        )
    );
    // Metadata limits.
    let fake = FakeLoki::with_config(FakeConfig {
        max_structured_metadata_entries_count: 1,
        ..FakeConfig::default()
    });
    let r = push_proto(
        &fake,
        &[(
            r#"{app="api"}"#,
            &[e(now, "x").with("a", "1").with("b", "2")],
        )],
    );
    assert!(
        r.text().starts_with(
            "stream '{app=\"api\"}' has too many structured metadata labels: '2', limit: '1'. "
        ),
        "{}",
        r.text()
    );
}

#[test]
fn resent_entries_are_stored_once() {
    let fake = timeless();
    let batch = [e(T, "a"), e(T + 1, "b"), e(T + 1, "b2")];
    let labels = r#"{app="api"}"#;
    assert_eq!(push_proto(&fake, &[(labels, &batch)]).status, 204);
    assert_eq!(push_proto(&fake, &[(labels, &batch)]).status, 204);
    assert_eq!(push_proto(&fake, &[(labels, &batch[..1])]).status, 204);
    assert_eq!(fake.entry_count(), 3);
    assert_eq!(
        fake.requests().iter().map(|r| r.stored).collect::<Vec<_>>(),
        [3, 0, 0]
    );
    // Same timestamp, another line: a new entry.
    assert_eq!(push_proto(&fake, &[(labels, &[e(T, "a'")])]).status, 204);
    assert_eq!(fake.entry_count(), 4);
    // Loki checks the window before its dedup: once the stream moved on
    // past the window, a re-send of an old entry is refused, not ignored.
    assert_eq!(
        push_proto(&fake, &[(labels, &[e(T + 2 * HOUR, "later")])]).status,
        204
    );
    let r = push_proto(&fake, &[(labels, &batch[..1])]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("entry too far behind"));
    // …except the stream's very last line, which is skipped silently.
    assert_eq!(
        push_proto(&fake, &[(labels, &[e(T + 2 * HOUR, "later")])]).status,
        204
    );
    assert_eq!(fake.entry_count(), 5);
}

#[test]
fn too_many_requests_answers_429_with_retry_after() {
    let fake = FakeLoki::start();
    fake.too_many_requests(2, 7);
    let now = now_ns();
    for _ in 0..2 {
        let r = push_proto(
            &fake,
            &[(r#"{app="api"}"#, &[e(now, "hello").with("k", "v")])],
        );
        assert_eq!(r.status, 429);
        assert_eq!(r.header("Retry-After"), Some("7"));
        assert_eq!(
            r.text(),
            "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '1' lines totaling '7' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n"
        );
    }
    assert_eq!(fake.entry_count(), 0);
    assert_eq!(
        push_proto(&fake, &[(r#"{app="api"}"#, &[e(now, "hello")])]).status,
        204
    );
    assert_eq!(
        fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 429, 204]
    );

    // The real limiter: a burst of 6 MiB, then 4 MiB/s.
    let fake = FakeLoki::start();
    let big = "x".repeat(200 * 1024);
    let batch: Vec<StoredEntry> = (0..20).map(|i| e(now + i, &big)).collect();
    assert_eq!(push_proto(&fake, &[(r#"{app="api"}"#, &batch)]).status, 204);
    let r = push_proto(&fake, &[(r#"{app="api"}"#, &batch)]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("Retry-After"), None, "Loki sends none");

    // Every k-th push fails with 500 and stores nothing.
    let fake = FakeLoki::start();
    fake.fail_every(3);
    let statuses: Vec<u16> = (0..6)
        .map(|i| push_proto(&fake, &[(r#"{app="api"}"#, &[e(now + i, "x")])]).status)
        .collect();
    assert_eq!(statuses, [204, 204, 500, 204, 204, 500]);
    assert_eq!(fake.entry_count(), 4);
}

#[test]
fn down_for_refuses_then_comes_back_on_the_same_port() {
    let fake = FakeLoki::start();
    let addr = fake.addr.clone();
    // A keep-alive connection that has already been used.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    kept.write_all(&request_bytes(&addr, "GET", "/ready", &[], b"", false))
        .unwrap();
    assert_eq!(read_response(&mut kept).unwrap().status, 200);

    let start = Instant::now();
    fake.down_for(Duration::from_millis(1500));
    assert!(fake.is_down());
    let err = TcpStream::connect(&addr).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // The kept connection was cut.
    let cut = kept
        .write_all(&request_bytes(&addr, "GET", "/ready", &[], b"", false))
        .and_then(|_| read_response(&mut kept));
    assert!(cut.is_err(), "the open connection survived the outage");

    let mut back = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(r) = try_send(&addr, "GET", "/ready", &[], b"") {
            back = Some((start.elapsed(), r.status));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (after, status) = back.expect("back on the same port");
    assert_eq!(status, 200);
    assert!(
        after >= Duration::from_millis(1450),
        "came back after {after:?}"
    );
    assert!(!fake.is_down());
    assert_eq!(fake.addr, addr);
    assert_eq!(
        push_proto(&fake, &[(r#"{app="api"}"#, &[e(now_ns(), "after")])]).status,
        204
    );
}

#[test]
fn auth_enabled_needs_a_tenant() {
    let fake = FakeLoki::with_config(FakeConfig {
        auth_enabled: true,
        ..FakeConfig::default()
    });
    let now = now_ns();
    let body = encode_protobuf(&[(r#"{app="api"}"#, &[e(now, "x")])]);
    let ct = ("Content-Type", "application/x-protobuf");
    let r = send(&fake.addr, "POST", "/loki/api/v1/push", &[ct], &body);
    assert_eq!((r.status, r.text()), (401, "no org id\n".to_string()));
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[ct, ("X-Scope-OrgID", "team-a")],
        &body,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        fake.requests()
            .iter()
            .map(|r| r.tenant.clone())
            .collect::<Vec<_>>(),
        [None, Some("team-a".to_string())]
    );
    assert_eq!(fake.tenant_streams("team-a").len(), 1);
    assert!(fake.tenant_streams("fake").is_empty());

    assert_eq!(query(&fake, r#"{app="api"}"#, "", &[]).status, 401);
    let v = query(&fake, r#"{app="api"}"#, "", &[("X-Scope-OrgID", "team-b")]).json();
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    let v = query(&fake, r#"{app="api"}"#, "", &[("X-Scope-OrgID", "team-a")]).json();
    assert_eq!(v["data"]["result"][0]["values"][0][1], "x");

    // Without auth the header is recorded but the tenant is `fake`.
    let fake = FakeLoki::start();
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[ct, ("X-Scope-OrgID", "team-a")],
        &body,
    );
    assert_eq!(r.status, 204);
    assert_eq!(fake.tenant_streams("fake").len(), 1);
}

#[test]
fn bodies_loki_cannot_read() {
    let fake = FakeLoki::start();
    let good = encode_protobuf(&[(r#"{app="api"}"#, &[e(now_ns(), "x")])]);
    let r = send(&fake.addr, "POST", "/loki/api/v1/push", &[], &good);
    assert_eq!(
        (r.status, r.text()),
        (400, "mime: no media type\n".to_string()),
        "Loki needs a Content-Type"
    );
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/x-protobuf")],
        b"not snappy at all",
    );
    assert_eq!(r.status, 400);
    // Framed snappy is not the block format.
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed
        .write_all(&snap::raw::Decoder::new().decompress_vec(&good).unwrap())
        .unwrap();
    let framed = framed.into_inner().unwrap();
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/x-protobuf")],
        &framed,
    );
    assert_eq!(r.status, 400, "framed snappy accepted");
    // Valid snappy, not a PushRequest.
    let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap();
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/x-protobuf")],
        &junk,
    );
    assert_eq!(r.status, 400);
    // `snappy` in Content-Encoding is ignored; an unknown media type means protobuf.
    let r = send(
        &fake.addr,
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Encoding", "snappy"),
        ],
        &good,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(fake.entry_count(), 1);
    assert_eq!(fake.requests().len(), 5);
}

#[test]
fn slow_answers_and_keep_alive() {
    let fake = FakeLoki::start();
    let mut s = TcpStream::connect(&fake.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..3 {
        let body = encode_protobuf(&[(r#"{app="api"}"#, &[e(now_ns(), &format!("line {i}"))])]);
        let headers = [("Content-Type", "application/x-protobuf")];
        s.write_all(&request_bytes(
            &fake.addr,
            "POST",
            "/loki/api/v1/push",
            &headers,
            &body,
            false,
        ))
        .unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 204);
    }
    assert_eq!(fake.entry_count(), 3);
    fake.slow(Duration::from_millis(300));
    let start = Instant::now();
    let r = send(&fake.addr, "GET", "/ready", &[], b"");
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(fake.wait_for_entries(3, Duration::from_millis(10)));
    assert!(!fake.wait_for_entries(4, Duration::from_millis(50)));
}
