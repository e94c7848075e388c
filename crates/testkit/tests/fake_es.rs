//! Tests of the fake Elasticsearch itself (crates/testkit/src/es.rs), through a
//! tiny raw HTTP/1.1 client, so that the fake's strictness is pinned down
//! before weir's Elasticsearch sink is tested against it.
use weir_testkit::es;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use es::{Credential, EsConfig, FakeEs};
use serde_json::{Value, json};

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        let chunked = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let mut out = Vec::new();
        if chunked {
            head.push_str("\r\n");
            out.extend_from_slice(head.as_bytes());
            for part in body.chunks(7) {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out)?;
        self.read_answer(method == "HEAD")
    }

    fn read_answer(&mut self, head_only: bool) -> std::io::Result<Answer> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; if head_only { 0 } else { len }];
        self.reader.read_exact(&mut body)?;
        let gz = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
        if gz {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
            body = plain;
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        })
    }
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    Conn::open(addr)
        .unwrap()
        .send(method, path, headers, body)
        .unwrap()
}

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn bulk(es: &FakeEs, body: &str) -> Answer {
    request(&es.addr, "POST", "/_bulk", &[NDJSON], body.as_bytes())
}

fn item(resp: &Value, i: usize) -> (&str, &Value) {
    let obj = resp["items"][i].as_object().unwrap();
    assert_eq!(obj.len(), 1, "an item has one key: {obj:?}");
    let (k, v) = obj.iter().next().unwrap();
    (k.as_str(), v)
}

fn statuses(resp: &Value) -> Vec<u64> {
    resp["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i.as_object().unwrap().values().next().unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn index_upserts_and_create_conflicts() {
    let es = FakeEs::start();
    let a = bulk(
        &es,
        concat!(
            "{\"index\":{\"_index\":\"app\",\"_id\":\"a\"}}\n{\"msg\":\"one\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"a\"}}\n{\"msg\":\"two\"}\n",
            "{\"create\":{\"_index\":\"app\",\"_id\":\"b\"}}\n{\"msg\":\"three\"}\n",
            "{\"create\":{\"_index\":\"app\",\"_id\":\"b\"}}\n{\"msg\":\"four\"}\n",
        ),
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("X-elastic-product"), Some("Elasticsearch"));
    let r = a.json();
    assert_eq!(r["errors"], true);
    assert!(r["took"].is_u64());
    let (op, i0) = item(&r, 0);
    assert_eq!(op, "index");
    assert_eq!(i0["_index"], "app");
    assert_eq!(i0["_id"], "a");
    assert_eq!(i0["_version"], 1);
    assert_eq!(i0["result"], "created");
    assert_eq!(i0["status"], 201);
    assert_eq!(i0["_shards"], json!({"total":2,"successful":1,"failed":0}));
    let (_, i1) = item(&r, 1);
    assert_eq!(
        (
            i1["_version"].as_u64(),
            i1["result"].as_str(),
            i1["status"].as_u64()
        ),
        (Some(2), Some("updated"), Some(200))
    );
    let (op, i2) = item(&r, 2);
    assert_eq!(
        (op, i2["status"].as_u64(), i2["result"].as_str()),
        ("create", Some(201), Some("created"))
    );
    let (op, i3) = item(&r, 3);
    assert_eq!(op, "create");
    assert_eq!(i3["status"], 409);
    assert_eq!(i3["_id"], "b");
    assert_eq!(i3["error"]["type"], "version_conflict_engine_exception");
    assert_eq!(
        i3["error"]["reason"],
        "[b]: version conflict, document already exists (current version [1])"
    );
    assert_eq!(i3["error"]["index"], "app");
    assert!(i3.get("_version").is_none());

    let docs = es.docs("app");
    assert_eq!(
        docs,
        vec![
            ("a".to_string(), json!({"msg":"two"})),
            ("b".to_string(), json!({"msg":"three"}))
        ]
    );
    let reqs = es.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].actions, 4);
    assert_eq!(reqs[0].item_statuses(), vec![201, 200, 201, 409]);
    assert!(reqs[0].errors);
    assert_eq!(
        reqs[0].content_type.as_deref(),
        Some("application/x-ndjson")
    );
}

#[test]
fn generated_ids_default_index_and_op_type() {
    let es = FakeEs::start();
    let a = request(
        &es.addr,
        "POST",
        "/web/_bulk",
        &[NDJSON],
        b"{\"index\":{}}\n{\"n\":1}\n{\"create\":{}}\n{\"n\":2}\n{\"index\":{\"op_type\":\"create\",\"_id\":\"x\"}}\n{\"n\":3}\n",
    );
    let r = a.json();
    assert_eq!(r["errors"], false, "{r}");
    let ids: Vec<String> = (0..2)
        .map(|i| item(&r, i).1["_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|id| id.len() == 20), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    // `op_type: create` answers under "create".
    assert_eq!(item(&r, 2).0, "create");
    assert_eq!(item(&r, 0).1["_index"], "web");
    assert_eq!(es.docs("web").len(), 3);
    // `_index` in the action overrides the path's index.
    let r = request(
        &es.addr,
        "PUT",
        "/web/_bulk",
        &[NDJSON],
        b"{\"index\":{\"_index\":\"other\"}}\n{}\n",
    )
    .json();
    assert_eq!(item(&r, 0).1["_index"], "other");
    assert_eq!(es.indices(), vec!["other", "web"]);
}

#[test]
fn data_streams_take_create_only_and_need_a_timestamp() {
    let es = FakeEs::start();
    let r = bulk(
        &es,
        concat!(
            "{\"create\":{\"_index\":\"logs-app-default\",\"_id\":\"1\"}}\n{\"@timestamp\":\"2025-01-31T08:00:00.123Z\",\"message\":\"boom\"}\n",
            "{\"index\":{\"_index\":\"logs-app-default\",\"_id\":\"2\"}}\n{\"@timestamp\":\"2025-01-31T08:00:00.123Z\"}\n",
            "{\"create\":{\"_index\":\"logs-app-default\"}}\n{\"message\":\"no time\"}\n",
            "{\"create\":{\"_index\":\"logs-app-default\"}}\n{\"@timestamp\":\"yesterday\"}\n",
            "{\"index\":{\"_index\":\"logs-2025.01.31\"}}\n{\"message\":\"plain index\"}\n",
            "{\"create\":{\"_index\":\"logs-app-default\"}}\n{\"@timestamp\":1738310400000}\n",
        ),
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 400, 400, 400, 201, 201]);
    let (_, ok) = item(&r, 0);
    let backing = ok["_index"].as_str().unwrap();
    assert!(
        backing.starts_with(".ds-logs-app-default-") && backing.ends_with("-000001"),
        "{backing}"
    );
    let (op, idx) = item(&r, 1);
    assert_eq!(op, "index");
    assert_eq!(idx["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        idx["error"]["reason"],
        "only write ops with an op_type of create are allowed in data streams"
    );
    let (_, no_ts) = item(&r, 2);
    assert_eq!(no_ts["error"]["type"], "document_parsing_exception");
    let reason = no_ts["error"]["reason"].as_str().unwrap();
    assert!(
        reason.ends_with("failed to parse: data stream timestamp field [@timestamp] is missing"),
        "{reason}"
    );
    assert_eq!(
        no_ts["error"]["caused_by"]["reason"],
        "data stream timestamp field [@timestamp] is missing"
    );
    let (_, bad_ts) = item(&r, 3);
    let reason = bad_ts["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed to parse field [@timestamp] of type [date]"),
        "{reason}"
    );
    assert_eq!(item(&r, 4).1["_index"], "logs-2025.01.31");

    assert_eq!(es.docs("logs-app-default").len(), 2);
    assert_eq!(es.docs(backing).len(), 2);
    assert_eq!(es.data_streams(), vec!["logs-app-default"]);
    assert_eq!(es.indices(), vec!["logs-2025.01.31", "logs-app-default"]);

    // Creating the same _id again in a stream is a 409 too.
    let r = bulk(&es, "{\"create\":{\"_index\":\"logs-app-default\",\"_id\":\"1\"}}\n{\"@timestamp\":\"2025-01-31\"}\n").json();
    assert_eq!(statuses(&r), vec![409]);
}

#[test]
fn data_stream_patterns_and_timestamp_filling_are_configurable() {
    let es = FakeEs::with_config(EsConfig {
        data_stream_patterns: vec!["events-*".into()],
        fill_missing_timestamp: true,
        ..EsConfig::default()
    });
    let r = bulk(
        &es,
        "{\"create\":{\"_index\":\"events-x\"}}\n{\"m\":1}\n{\"index\":{\"_index\":\"logs-a-b\"}}\n{}\n",
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 201]);
    let docs = es.docs("events-x");
    assert!(
        docs[0].1["@timestamp"].as_str().unwrap().ends_with('Z'),
        "{docs:?}"
    );
    assert_eq!(es.data_streams(), vec!["events-x"]);
}

#[test]
fn missing_final_newline_is_a_whole_request_400() {
    let es = FakeEs::start();
    let a = bulk(&es, "{\"index\":{\"_index\":\"app\"}}\n{\"msg\":\"x\"}");
    assert_eq!(a.status, 400);
    let expected = json!({"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"}],"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400});
    assert_eq!(a.json(), expected);
    assert!(es.indices().is_empty());
    assert_eq!(es.requests()[0].status, 400);
    // Blank lines are skipped; `\r\n` line ends work.
    let r = bulk(
        &es,
        "\n{\"index\":{\"_index\":\"app\"}}\r\n{\"msg\":\"x\"}\r\n\n",
    )
    .json();
    assert_eq!(statuses(&r), vec![201]);
    assert_eq!(es.raw_docs("app")[0].1, "{\"msg\":\"x\"}");
}

#[test]
fn malformed_bulk_bodies() {
    let es = FakeEs::start();
    let a = bulk(&es, "{\"index\":{\"_index\":\"app\"\n{}\n");
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"]["type"],
        "x_content_parse_exception",
        "{}",
        a.body
    );
    // What ES 8 lets pass on action lines: a missing final brace, extra keys,
    // trailing data, unknown actions (whose items it ignores).
    let lax = concat!(
        "{\"index\":{\"_index\":\"app\"}\n{\"n\":1}\n",
        "{\"index\":{\"_index\":\"app\"},\"create\":{}}\n{\"n\":2}\n",
        "{\"index\":{\"_index\":\"app\"}} {}\n{\"n\":3}\n",
        "{\"upsert\":{\"_index\":\"app\"}}\n{\"n\":4}\n",
    );
    let r = bulk(&es, lax).json();
    assert_eq!(statuses(&r), vec![201, 201, 201]);
    let a = bulk(&es, "{\"upsert\":{}}\n{}\n");
    assert_eq!(
        a.json()["error"]["reason"],
        "Validation Failed: 1: no requests added;"
    );
    // ES 9 refuses them.
    let strict = FakeEs::with_config(EsConfig {
        strict_action_lines: true,
        ..EsConfig::default()
    });
    let a = bulk(&strict, "{\"upsert\":{}}\n{}\n");
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"]["reason"],
        "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [upsert]"
    );
    let a = bulk(&strict, "{\"index\":{\"_index\":\"app\"}\n{}\n");
    assert_eq!(a.json()["error"]["type"], "x_content_parse_exception");
    let a = bulk(&strict, "{\"index\":{},\"create\":{}}\n{}\n");
    assert_eq!(
        a.json()["error"]["reason"],
        "Malformed action/metadata line [1], expected END_OBJECT but found [FIELD_NAME]"
    );
    let a = bulk(&strict, "{\"index\":{}} {}\n{}\n");
    assert_eq!(
        a.json()["error"]["reason"],
        "Malformed action/metadata line [1], unexpected data after the closing brace"
    );
    let a = bulk(
        &es,
        "{\"index\":{\"_index\":\"app\",\"_type\":\"_doc\"}}\n{}\n",
    );
    assert_eq!(
        a.json()["error"]["reason"],
        "Action/metadata line [1] contains an unknown parameter [_type]"
    );
    let a = bulk(&es, "[1]\n");
    assert_eq!(
        a.json()["error"]["reason"],
        "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]"
    );
    let a = bulk(&es, "{\"index\":{}}\n{}\n");
    assert_eq!(
        a.json()["error"]["type"],
        "action_request_validation_exception"
    );
    assert_eq!(
        a.json()["error"]["reason"],
        "Validation Failed: 1: index is missing;"
    );
    let a = bulk(&es, "\n");
    assert_eq!(
        a.json()["error"]["reason"],
        "Validation Failed: 1: no requests added;"
    );
    let a = bulk(&es, "");
    assert_eq!(
        (a.status, a.json()["error"]["type"].as_str()),
        (400, Some("parse_exception"))
    );
    // A bad *source* line fails only its item.
    let r = bulk(
        &es,
        concat!(
            "{\"index\":{\"_index\":\"app\"}}\n{\"msg\": nope}\n",
            "{\"index\":{\"_index\":\"app\"}}\n[1,2]\n",
            "{\"index\":{\"_index\":\"app\"}}\n{\"a\":1,\"a\":2}\n",
            "{\"index\":{\"_index\":\"app\"}}\n{\"_id\":\"x\"}\n",
            "{\"index\":{\"_index\":\"app\"}}\n{\"ok\":true}\n",
        ),
    )
    .json();
    assert_eq!(statuses(&r), vec![400, 400, 400, 400, 201]);
    for i in 0..4 {
        assert_eq!(item(&r, i).1["error"]["type"], "document_parsing_exception");
    }
    assert_eq!(
        item(&r, 1).1["error"]["reason"],
        "[1:1] Malformed content, must start with an object"
    );
    assert!(
        item(&r, 2).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("Duplicate field 'a'")
    );
    assert!(
        item(&r, 3).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("Field [_id] is a metadata field")
    );
    // Content-Type.
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[("Content-Type", "text/plain")],
        b"{}\n",
    );
    assert_eq!(a.status, 406);
    assert_eq!(
        a.json(),
        json!({"error":"Content-Type header [text/plain] is not supported","status":406})
    );
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[("Content-Type", "application/json; charset=UTF-8")],
        b"{\"index\":{\"_index\":\"j\"}}\n{}\n",
    );
    assert_eq!(a.status, 200);
    let a = request(
        &es.addr,
        "POST",
        "/_bulk?refresh=maybe",
        &[NDJSON],
        b"{\"index\":{\"_index\":\"j\"}}\n{}\n",
    );
    assert_eq!(a.status, 400);
    let a = request(
        &es.addr,
        "POST",
        "/_bulk?colour=red",
        &[NDJSON],
        b"{\"index\":{\"_index\":\"j\"}}\n{}\n",
    );
    assert_eq!(
        a.json()["error"]["reason"],
        "request [/_bulk] contains unrecognized parameter: [colour]"
    );
    let a = request(&es.addr, "GET", "/_bulk", &[], b"");
    assert_eq!(a.status, 405);
}

#[test]
fn invalid_index_names_fail_their_items() {
    let es = FakeEs::start();
    let long = "a".repeat(256);
    let body = format!(
        "{{\"index\":{{\"_index\":\"Logs\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"a:b\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"_x\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"..\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"{long}\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"a b\"}}}}\n{{}}\n{{\"index\":{{\"_index\":\"fine\"}}}}\n{{}}\n"
    );
    let r = bulk(&es, &body).json();
    assert_eq!(statuses(&r), vec![400, 400, 400, 400, 400, 400, 201]);
    let e = &item(&r, 0).1["error"];
    assert_eq!(e["type"], "invalid_index_name_exception");
    assert_eq!(e["reason"], "Invalid index name [Logs], must be lowercase");
    assert_eq!(item(&r, 0).1["_id"], Value::Null);
    assert_eq!(
        item(&r, 1).1["error"]["reason"],
        "Invalid index name [a:b], must not contain ':'"
    );
    assert_eq!(
        item(&r, 2).1["error"]["reason"],
        "Invalid index name [_x], must not start with '_', '-', or '+'"
    );
    assert_eq!(
        item(&r, 3).1["error"]["reason"],
        "Invalid index name [..], must not be '.' or '..'"
    );
    assert!(
        item(&r, 4).1["error"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("index name is too long, (256 > 255)")
    );
    assert!(
        item(&r, 5).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("must not contain the following characters")
    );
    assert_eq!(es.indices(), vec!["fine"]);
}

#[test]
fn gzip_and_chunked_bodies() {
    let es = FakeEs::start();
    let body = "{\"index\":{\"_index\":\"gz\",\"_id\":\"1\"}}\n{\"msg\":\"compressed\"}\n";
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &es::gzip(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        es.docs("gz"),
        vec![("1".to_string(), json!({"msg":"compressed"}))]
    );
    let info = es.requests().pop().unwrap();
    assert_eq!(info.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(info.body_bytes, body.len());
    assert!(info.wire_bytes != info.body_bytes);

    let body =
        "{\"index\":{\"_index\":\"chunky\",\"_id\":\"1\"}}\n{\"msg\":\"in many small chunks\"}\n";
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[NDJSON, ("Transfer-Encoding", "chunked")],
        body.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(es.docs("chunky").len(), 1);

    // Answers are gzipped for clients that accept it.
    let a = request(&es.addr, "GET", "/", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    assert_eq!(a.json()["version"]["number"], "8.13.0");
}

#[test]
fn per_item_rejections() {
    let es = FakeEs::start();
    es.reject_items(2, 1);
    let body: String = (0..5)
        .map(|i| format!("{{\"create\":{{\"_index\":\"app\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"))
        .collect();
    let r = bulk(&es, &body).json();
    assert_eq!(r["errors"], true);
    assert_eq!(statuses(&r), vec![201, 429, 201, 429, 201]);
    let e = &item(&r, 1).1["error"];
    assert_eq!(e["type"], "es_rejected_execution_exception");
    assert_eq!(item(&r, 1).1["_id"], "1");
    let ids: Vec<String> = es.docs("app").into_iter().map(|d| d.0).collect();
    assert_eq!(ids, vec!["0", "2", "4"]);
    // Retrying: the rejected ones now go in; the rest are 409 (already stored).
    let r = bulk(&es, &body).json();
    assert_eq!(statuses(&r), vec![409, 201, 409, 201, 409]);
    assert_eq!(es.docs("app").len(), 5);
}

#[test]
fn whole_request_rejections() {
    let es = FakeEs::start();
    es.reject_requests(2, 429);
    let body = "{\"index\":{\"_index\":\"app\"}}\n{}\n";
    for _ in 0..2 {
        let a = bulk(&es, body);
        assert_eq!(a.status, 429);
        let v = a.json();
        assert_eq!(v["error"]["type"], "es_rejected_execution_exception");
        assert_eq!(
            v["error"]["root_cause"][0]["type"],
            "es_rejected_execution_exception"
        );
        assert_eq!(v["status"], 429);
    }
    assert!(es.docs("app").is_empty());
    assert_eq!(bulk(&es, body).status, 200);
    es.reject_requests(1, 503);
    let a = bulk(&es, body);
    assert_eq!(
        (a.status, a.json()["error"]["type"].as_str()),
        (503, Some("cluster_block_exception"))
    );
    es.reject_requests(1, 502);
    let a = bulk(&es, body);
    assert_eq!(a.status, 502);
    assert!(a.body.contains("<html>"));
    assert_eq!(
        es.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 429, 200, 503, 502]
    );
}

#[test]
fn mapping_conflicts() {
    let es = FakeEs::start();
    let r = bulk(
        &es,
        concat!(
            "{\"index\":{\"_index\":\"app\",\"_id\":\"1\"}}\n{\"level\":5,\"user\":{\"id\":1},\"ok\":true,\"ts\":\"2025-01-31T08:00:00Z\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"2\"}}\n{\"level\":\"warn\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"3\"}}\n{\"level\":\"7\",\"ok\":\"false\",\"ts\":1738310400000}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"4\"}}\n{\"user\":\"bob\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"5\"}}\n{\"level\":{\"name\":\"x\"}}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"6\"}}\n{\"user.id\":\"not a number\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"7\"}}\n{\"ts\":\"soon\"}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"8\"}}\n{\"ok\":\"yes\"}\n",
        ),
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 400, 201, 400, 400, 400, 400, 400]);
    let e = &item(&r, 1).1["error"];
    assert_eq!(e["type"], "document_parsing_exception");
    assert_eq!(
        e["reason"],
        "[1:10] failed to parse field [level] of type [long] in document with id '2'. Preview of field's value: 'warn'"
    );
    assert_eq!(e["caused_by"]["reason"], "For input string: \"warn\"");
    assert_eq!(
        item(&r, 3).1["error"]["reason"],
        "[1:9] object mapping for [user] tried to parse field [user] as object, but found a concrete value"
    );
    assert!(
        item(&r, 4).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("of type [long]")
    );
    assert!(
        item(&r, 5).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("failed to parse field [user.id] of type [long]")
    );
    assert!(
        item(&r, 6).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("of type [date]")
    );
    assert!(
        item(&r, 7).1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("of type [boolean]")
    );
    let m = es.mapping("app");
    assert_eq!(m["level"], "long");
    assert_eq!(m["user"], "object");
    assert_eq!(m["user.id"], "long");
    assert_eq!(m["ts"], "date");

    // Forced conflict on a named field, in any index.
    es.conflict_field("level");
    let r = bulk(
        &es,
        "{\"create\":{\"_index\":\"logs-x-y\"}}\n{\"@timestamp\":\"2025-01-31T08:00:00Z\",\"level\":\"info\"}\n{\"index\":{\"_index\":\"other\"}}\n{\"level\":3}\n",
    )
    .json();
    assert_eq!(statuses(&r), vec![400, 201]);
    let e = &item(&r, 0).1["error"];
    assert_eq!(e["type"], "document_parsing_exception");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("failed to parse field [level] of type [long]"),
        "{e}"
    );
    es.clear_conflict_fields();

    // Data streams have ignore_malformed (ES 8.13 logs@settings): scalars kept.
    let r = bulk(
        &es,
        concat!(
            "{\"create\":{\"_index\":\"logs-x-y\"}}\n{\"@timestamp\":\"2025-01-31T08:00:00Z\",\"n\":1}\n",
            "{\"create\":{\"_index\":\"logs-x-y\"}}\n{\"@timestamp\":\"2025-01-31T08:00:01Z\",\"n\":\"many\"}\n",
            "{\"create\":{\"_index\":\"logs-x-y\"}}\n{\"@timestamp\":\"2025-01-31T08:00:02Z\",\"n\":{\"a\":1}}\n",
        ),
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 201, 400]);
}

#[test]
fn total_fields_limit() {
    let es = FakeEs::with_config(EsConfig {
        total_fields_limit: 5,
        ..EsConfig::default()
    });
    let r = bulk(
        &es,
        "{\"index\":{\"_index\":\"app\"}}\n{\"a\":1,\"b\":2}\n{\"index\":{\"_index\":\"app\"}}\n{\"c\":\"x\",\"d\":\"y\"}\n",
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 400]);
    let reason = item(&r, 1).1["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Limit of total fields [5] has been exceeded while adding new fields [4]"),
        "{reason}"
    );
}

#[test]
fn filter_path_shrinks_the_answer() {
    let es = FakeEs::start();
    let a = request(
        &es.addr,
        "POST",
        "/_bulk?filter_path=errors,items.*.error,items.*.status",
        &[NDJSON],
        b"{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n",
    );
    let v = a.json();
    assert_eq!(v["errors"], true);
    assert!(v.get("took").is_none());
    assert_eq!(v["items"][0], json!({"create":{"status":201}}));
    assert_eq!(v["items"][1]["create"]["status"], 409);
    assert!(v["items"][1]["create"]["error"]["type"].is_string());
}

#[test]
fn outage_recovers_on_the_same_port() {
    let es = FakeEs::start();
    let body = b"{\"index\":{\"_index\":\"app\"}}\n{}\n";
    let mut kept = Conn::open(&es.addr).unwrap();
    assert_eq!(
        kept.send("POST", "/_bulk", &[NDJSON], body).unwrap().status,
        200
    );
    es.down_for(Duration::from_millis(600));
    assert!(es.is_down());
    assert!(
        TcpStream::connect(&es.addr).is_err(),
        "connections are refused while down"
    );
    assert!(
        kept.send("POST", "/_bulk", &[NDJSON], body).is_err(),
        "open connections are cut"
    );
    let start = Instant::now();
    let conn = loop {
        match Conn::open(&es.addr) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("never came back: {e}"),
        }
    };
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "came back too early: {:?}",
        start.elapsed()
    );
    let mut conn = conn;
    assert_eq!(
        conn.send("POST", "/_bulk", &[NDJSON], body).unwrap().status,
        200
    );
    assert!(!es.is_down());
    assert_eq!(es.docs("app").len(), 2);
}

#[test]
fn slow_answers_keep_the_writes() {
    let es = FakeEs::start();
    es.slow(Duration::from_millis(300));
    let start = Instant::now();
    let mut conn = Conn::open(&es.addr).unwrap();
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let r = conn.send(
        "POST",
        "/_bulk",
        &[NDJSON],
        b"{\"create\":{\"_index\":\"app\",\"_id\":\"k\"}}\n{}\n",
    );
    assert!(r.is_err(), "the client times out");
    assert!(es.wait_for_docs("app", 1, Duration::from_secs(5)));
    es.slow(Duration::ZERO);
    let r = bulk(&es, "{\"create\":{\"_index\":\"app\",\"_id\":\"k\"}}\n{}\n").json();
    assert_eq!(statuses(&r), vec![409]);
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn path_prefix_routing() {
    let es = FakeEs::with_config(EsConfig {
        path_prefix: "/es".into(),
        ..EsConfig::default()
    });
    assert_eq!(es.url(), format!("http://{}/es", es.addr));
    let body = b"{\"index\":{}}\n{\"m\":1}\n";
    let a = request(
        &es.addr,
        "POST",
        "/es/logs-2025.01.31/_bulk",
        &[NDJSON],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(es.docs("logs-2025.01.31").len(), 1);
    let a = request(
        &es.addr,
        "POST",
        "/es/_bulk",
        &[NDJSON],
        b"{\"index\":{\"_index\":\"x\"}}\n{}\n",
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        request(&es.addr, "POST", "/_bulk", &[NDJSON], body).status,
        404
    );
    assert_eq!(
        request(&es.addr, "POST", "/esx/_bulk", &[NDJSON], body).status,
        404
    );
    let a = request(&es.addr, "POST", "/es/a/b/_bulk", &[NDJSON], body);
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"],
        "no handler found for uri [/a/b/_bulk] and method [POST]"
    );
    assert_eq!(es.doc_count("x"), 1);
    assert_eq!(
        request(&es.addr, "GET", "/es", &[], b"").json()["version"]["number"],
        "8.13.0"
    );
}

#[test]
fn authentication() {
    let es = FakeEs::with_config(EsConfig {
        credentials: vec![
            Credential::basic("elastic", "changeme"),
            Credential::api_key("kid", "secret"),
            Credential::bearer("tok"),
        ],
        ..EsConfig::default()
    });
    let body = b"{\"index\":{\"_index\":\"app\"}}\n{}\n";
    let a = request(&es.addr, "POST", "/_bulk", &[NDJSON], body);
    assert_eq!(a.status, 401);
    let v = a.json();
    assert_eq!(v["error"]["type"], "security_exception");
    assert_eq!(
        v["error"]["reason"],
        "missing authentication credentials for REST request [/_bulk]"
    );
    assert!(a.header("WWW-Authenticate").is_some());
    let wrong = Credential::basic("elastic", "nope").header();
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[NDJSON, ("Authorization", &wrong)],
        body,
    );
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json()["error"]["reason"],
        "unable to authenticate user [elastic] for REST request [/_bulk]"
    );
    for c in [
        Credential::basic("elastic", "changeme"),
        Credential::api_key("kid", "secret"),
        Credential::bearer("tok"),
    ] {
        let h = c.header();
        let a = request(
            &es.addr,
            "POST",
            "/_bulk",
            &[NDJSON, ("Authorization", &h)],
            body,
        );
        assert_eq!(a.status, 200, "{h}: {}", a.body);
    }
    let a = request(
        &es.addr,
        "POST",
        "/_bulk",
        &[NDJSON, ("Authorization", "ApiKey a2lkOnNlY3JldA==")],
        body,
    );
    assert_eq!(a.status, 200);
    assert_eq!(request(&es.addr, "GET", "/", &[], b"").status, 401);
    let seen: Vec<Option<String>> = es.requests().into_iter().map(|r| r.authorization).collect();
    assert_eq!(seen[0], None);
    assert_eq!(seen[2].as_deref(), Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="));
    assert_eq!(
        es.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![401, 401, 200, 200, 200, 200]
    );
    assert_eq!(es.http_requests().len(), 7);
    assert_eq!(es.docs("app").len(), 4);
}

#[test]
fn delete_and_versions() {
    let es = FakeEs::start();
    let r = bulk(
        &es,
        concat!(
            "{\"index\":{\"_index\":\"app\",\"_id\":\"1\"}}\n{}\n",
            "{\"delete\":{\"_index\":\"app\",\"_id\":\"1\"}}\n",
            "{\"delete\":{\"_index\":\"app\",\"_id\":\"1\"}}\n",
            "{\"index\":{\"_index\":\"app\",\"_id\":\"1\"}}\n{}\n",
            "{\"delete\":{\"_index\":\"nope\",\"_id\":\"1\"}}\n",
        ),
    )
    .json();
    assert_eq!(statuses(&r), vec![201, 200, 404, 201, 404]);
    let details = &es.requests()[0].item_details;
    assert_eq!(
        details[2].error_type, None,
        "a not_found delete is no error"
    );
    assert_eq!(
        details[4].error_type.as_deref(),
        Some("index_not_found_exception")
    );
    let r2 = bulk(&es, "{\"delete\":{\"_index\":\"app\",\"_id\":\"zz\"}}\n").json();
    assert_eq!(r2["errors"], false);
    assert_eq!(item(&r2, 0).1["result"], "not_found");
    assert_eq!(item(&r, 1).1["result"], "deleted");
    assert_eq!(item(&r, 3).1["_version"], 3);
    assert_eq!(item(&r, 4).1["error"]["type"], "index_not_found_exception");
    // A trailing action without its source line is dropped, as ES does.
    let r = bulk(
        &es,
        "{\"index\":{\"_index\":\"app\",\"_id\":\"2\"}}\n{}\n{\"index\":{\"_index\":\"app\"}}\n",
    )
    .json();
    assert_eq!(statuses(&r), vec![201]);
}

#[test]
fn oversized_requests_get_413() {
    let es = FakeEs::with_config(EsConfig {
        max_content_length: 64,
        ..EsConfig::default()
    });
    let body = format!(
        "{{\"index\":{{\"_index\":\"app\"}}}}\n{{\"m\":\"{}\"}}\n",
        "x".repeat(100)
    );
    let a = bulk(&es, &body);
    assert_eq!(a.status, 413);
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(es.requests()[0].status, 413);
    assert!(es.indices().is_empty());
}
