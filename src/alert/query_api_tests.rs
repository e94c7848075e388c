use std::sync::Arc;

use serde_json::{Value as JsonValue, json};

use super::params::{J, go_json_float, parse_duration, parse_time, rfc3339, timestamp};
use super::*;
use crate::alert::promql::MemStorage;
use crate::alert::state::AlertState;
use crate::alert::status::Health;

struct Fake {
    store: MemStorage,
    groups: Vec<GroupStatus>,
}

impl RulesView for Fake {
    fn with_storage(&self, f: &mut dyn FnMut(&dyn Storage)) {
        f(&self.store)
    }
    fn groups(&self) -> Vec<GroupStatus> {
        self.groups.clone()
    }
    fn oldest_ms(&self) -> i64 {
        0
    }
}

fn alert() -> Alert {
    Alert {
        state: AlertState::Firing,
        labels: Labels::from_pairs([("alertname", "High"), ("job", "a")]),
        annotations: vec![("summary".into(), "x > 1 & <b>".into())],
        value: 1.0,
        active_at: 1_733_040_000_120,
        fired_at: Some(1_733_040_000_120),
        resolved_at: None,
        last_sent_at: None,
        valid_until: None,
        keep_firing_since: None,
    }
}

fn groups() -> Vec<GroupStatus> {
    vec![GroupStatus {
        name: "g".into(),
        file: "rules.yml".into(),
        interval_ms: 60_000,
        limit: 0,
        last_evaluation_ms: Some(1_733_040_000_000),
        evaluation_seconds: 0.00025,
        rules: vec![
            RuleStatus {
                name: "job:x:rate5m".into(),
                query: "sum by (job) (rate(x_total[5m]))".into(),
                labels: vec![],
                health: Health::Ok,
                last_error: None,
                last_evaluation_ms: Some(1_733_040_000_000),
                evaluation_seconds: 1e-7,
                kind: RuleStatusKind::Recording,
            },
            RuleStatus {
                name: "High".into(),
                query: "x_total > 1".into(),
                labels: vec![("severity".into(), "page".into())],
                health: Health::Err,
                last_error: Some("boom".into()),
                last_evaluation_ms: None,
                evaluation_seconds: 0.0,
                kind: RuleStatusKind::Alerting {
                    for_ms: 300_000,
                    keep_firing_for_ms: 0,
                    annotations: vec![("summary".into(), "x > 1 & <b>".into())],
                    state: AlertState::Firing,
                    alerts: vec![alert()],
                },
            },
        ],
    }]
}

fn view() -> Arc<dyn RulesView> {
    let mut store = MemStorage::new();
    store
        .load(r#"x_total{job="a"}"#, "0+10x40", 15_000)
        .unwrap();
    store
        .load(r#"x_total{job="b"}"#, "0+20x40", 15_000)
        .unwrap();
    store.load(r#"up{job="a"}"#, "1x40", 15_000).unwrap();
    Arc::new(Fake {
        store,
        groups: groups(),
    })
}

async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.ok() });
    format!("http://{addr}")
}

/// The status, the raw body and the parsed body.
async fn get(base: &str, path: &str) -> (u16, String, JsonValue) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "{path}: content type"
    );
    let body = r.text().await.unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, body, v)
}

async fn ok(base: &str, path: &str) -> JsonValue {
    let (status, body, v) = get(base, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(v["status"], "success", "{path}");
    v["data"].clone()
}

async fn err(base: &str, path: &str, code: u16, kind: &str) -> String {
    let (status, body, v) = get(base, path).await;
    assert_eq!(status, code, "{path}: {body}");
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], kind, "{path}");
    v["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn instant_queries_answer_prometheus_shapes() {
    let b = serve(router(view())).await;
    let (_, body, _) = get(&b, "/api/v1/query?query=x_total&time=300").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"x_total","job":"a"},"value":[300,"200"]},{"metric":{"__name__":"x_total","job":"b"},"value":[300,"400"]}]}}"#
    );
    let d = ok(&b, "/api/v1/query?query=1.5&time=1733040000.123").await;
    assert_eq!(
        d,
        json!({"resultType": "scalar", "result": [1733040000.123, "1.5"]})
    );
    let d = ok(&b, "/api/v1/query?query=%22hi%22&time=10").await;
    assert_eq!(d, json!({"resultType": "string", "result": [10, "hi"]}));
    let d = ok(
        &b,
        "/api/v1/query?query=x_total%7Bjob%3D%22a%22%7D%5B30s%5D&time=30",
    )
    .await;
    assert_eq!(
        d,
        json!({"resultType": "matrix", "result": [{"metric": {"__name__": "x_total", "job": "a"},
            "values": [[0, "0"], [15, "10"], [30, "20"]]}]})
    );
    // Special values, tiny values and an RFC 3339 time.
    let q = "/api/v1/query?time=1970-01-01T00:05:00Z&query=";
    for (expr, want) in [
        ("up%2F0", "+Inf"),
        ("-up%2F0", "-Inf"),
        ("vector(0)%2F0", "NaN"),
        ("vector(1e-7)", "1e-07"),
        ("vector(1e21)", "1e+21"),
        ("vector(123456789)", "123456789"),
    ] {
        let d = ok(&b, &format!("{q}{expr}")).await;
        assert_eq!(d["result"][0]["value"], json!([300, want]), "{expr}");
    }
    let d = ok(&b, "/api/v1/query?query=scalar(vector(1e-7))&time=1").await;
    assert_eq!(d["result"], json!([1, "0.0000001"]));
    // Without time: now.
    let d = ok(&b, "/api/v1/query?query=time()").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((d["result"][0].as_f64().unwrap() - now).abs() < 60.0);
    // A timeout is accepted and not enforced.
    ok(&b, "/api/v1/query?query=up&timeout=5s&time=5").await;
}

#[tokio::test]
async fn post_form_bodies_and_query_strings() {
    let b = serve(router(view())).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{b}/api/v1/query"))
        .form(&[("query", "sum(x_total)"), ("time", "300")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: JsonValue = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {}, "value": [300, "600"]}])
    );
    // Parameters in the query string of a POST, and repeated match[].
    let r = c
        .post(format!("{b}/api/v1/series?match[]=up"))
        .form(&[("match[]", "x_total{job=\"b\"}")])
        .send()
        .await
        .unwrap();
    let v: JsonValue = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        v["data"],
        json!([{"__name__": "up", "job": "a"}, {"__name__": "x_total", "job": "b"}])
    );
}

#[tokio::test]
async fn query_errors_are_prometheus_errors() {
    let b = serve(router(view())).await;
    let e = err(&b, "/api/v1/query?query=up&time=x", 400, "bad_data").await;
    assert_eq!(
        e,
        r#"invalid parameter "time": Invalid time value for 'time': cannot parse "x" to a valid timestamp"#
    );
    let e = err(&b, "/api/v1/query?query=sum(", 400, "bad_data").await;
    assert!(e.starts_with(r#"invalid parameter "query": "#), "{e}");
    let e = err(&b, "/api/v1/query", 400, "bad_data").await;
    assert!(e.starts_with(r#"invalid parameter "query": "#), "{e}");
    let e = err(&b, "/api/v1/query?query=up&timeout=soon", 400, "bad_data").await;
    assert_eq!(
        e,
        r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#
    );
    // Many-to-many matching fails at evaluation.
    let q = "/api/v1/query?time=300&query=x_total%2Bon()x_total";
    err(&b, q, 422, "execution").await;
}

#[tokio::test]
async fn range_queries() {
    let b = serve(router(view())).await;
    let d = ok(
        &b,
        "/api/v1/query_range?query=x_total%7Bjob%3D%22a%22%7D&start=0&end=60&step=15s",
    )
    .await;
    assert_eq!(
        d,
        json!({"resultType": "matrix", "result": [{"metric": {"__name__": "x_total", "job": "a"},
            "values": [[0, "0"], [15, "10"], [30, "20"], [45, "30"], [60, "40"]]}]})
    );
    // A scalar expression gives a matrix too; step in float seconds.
    let d = ok(
        &b,
        "/api/v1/query_range?query=time()&start=0.5&end=30.5&step=15",
    )
    .await;
    assert_eq!(
        d,
        json!({"resultType": "matrix", "result": [{"metric": {},
            "values": [[0.5, "0.5"], [15.5, "15.5"], [30.5, "30.5"]]}]})
    );
    let d = ok(&b, "/api/v1/query_range?query=up&start=0&end=60&step=1m").await;
    assert_eq!(d["result"][0]["values"], json!([[0, "1"], [60, "1"]]));
    let r = "/api/v1/query_range?query=up";
    let cases = [
        (
            "&end=1&step=1",
            r#"invalid parameter "start": cannot parse "" to a valid timestamp"#,
        ),
        (
            "&start=1&end=x&step=1",
            r#"invalid parameter "end": cannot parse "x" to a valid timestamp"#,
        ),
        (
            "&start=10&end=5&step=1",
            r#"invalid parameter "end": end timestamp must not be before start time"#,
        ),
        (
            "&start=0&end=5",
            r#"invalid parameter "step": cannot parse "" to a valid duration"#,
        ),
        (
            "&start=0&end=5&step=0",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "&start=0&end=5&step=-1s",
            r#"invalid parameter "step": cannot parse "-1s" to a valid duration"#,
        ),
        (
            "&start=0&end=5&step=-1",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "&start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
    ];
    for (q, want) in cases {
        assert_eq!(
            err(&b, &format!("{r}{q}"), 400, "bad_data").await,
            want,
            "{q}"
        );
    }
    // 11,000 steps are allowed.
    ok(&b, "/api/v1/query_range?query=up&start=0&end=11000&step=1").await;
    let e = err(
        &b,
        "/api/v1/query_range?query=up[5m]&start=0&end=5&step=1",
        400,
        "bad_data",
    )
    .await;
    assert_eq!(
        e,
        r#"invalid expression type "range vector" for range query, must be Scalar or instant Vector"#
    );
    let e = err(
        &b,
        "/api/v1/query_range?query=sum(&start=0&end=5&step=1",
        400,
        "bad_data",
    )
    .await;
    assert!(!e.starts_with("invalid parameter"), "{e}");
}

#[tokio::test]
async fn series_and_labels() {
    let b = serve(router(view())).await;
    let d = ok(&b, "/api/v1/series?match[]=x_total").await;
    assert_eq!(
        d,
        json!([{"__name__": "x_total", "job": "a"}, {"__name__": "x_total", "job": "b"}])
    );
    let d = ok(
        &b,
        "/api/v1/series?match[]=x_total&match[]=%7Bjob%3D%22a%22%7D&start=0&end=600",
    )
    .await;
    assert_eq!(d.as_array().unwrap().len(), 3);
    assert_eq!(
        ok(&b, "/api/v1/series?match[]=up&start=700&end=800").await,
        json!([])
    );
    let e = err(&b, "/api/v1/series", 400, "bad_data").await;
    assert_eq!(e, "no match[] parameter provided");
    let e = err(
        &b,
        "/api/v1/series?match[]=%7Bjob%3D~%22.*%22%7D",
        400,
        "bad_data",
    )
    .await;
    // The parser refuses it already (as Prometheus' does).
    assert!(
        e.starts_with(r#"invalid parameter "match[]": "#)
            && e.ends_with("must contain at least one non-empty matcher"),
        "{e}"
    );
    err(&b, "/api/v1/series?match[]=up&start=never", 400, "bad_data").await;

    assert_eq!(ok(&b, "/api/v1/labels").await, json!(["__name__", "job"]));
    assert_eq!(
        ok(&b, "/api/v1/labels?match[]=up").await,
        json!(["__name__", "job"])
    );
    assert_eq!(ok(&b, "/api/v1/labels?start=900").await, json!([]));
    assert_eq!(ok(&b, "/api/v1/label/job/values").await, json!(["a", "b"]));
    assert_eq!(
        ok(&b, "/api/v1/label/job/values?match[]=up").await,
        json!(["a"])
    );
    assert_eq!(
        ok(&b, "/api/v1/label/__name__/values").await,
        json!(["up", "x_total"])
    );
    assert_eq!(ok(&b, "/api/v1/label/nope/values").await, json!([]));
    let e = err(&b, "/api/v1/label/1x/values", 400, "bad_data").await;
    assert_eq!(e, r#"invalid label name: "1x""#);
}

#[tokio::test]
async fn alerts_and_rules() {
    let b = serve(router(view())).await;
    let (_, body, v) = get(&b, "/api/v1/alerts").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"High","job":"a"},"annotations":{"summary":"x \u003e 1 \u0026 \u003cb\u003e"},"state":"firing","activeAt":"2024-12-01T08:00:00.12Z","value":"1e+00"}]}}"#
    );
    assert_eq!(
        v["data"]["alerts"][0]["annotations"]["summary"],
        "x > 1 & <b>"
    );

    let d = ok(&b, "/api/v1/rules").await;
    let alert = json!({"labels": {"alertname": "High", "job": "a"},
        "annotations": {"summary": "x > 1 & <b>"}, "state": "firing",
        "activeAt": "2024-12-01T08:00:00.12Z", "value": "1e+00"});
    let recording = json!({"name": "job:x:rate5m", "query": "sum by (job) (rate(x_total[5m]))",
        "health": "ok", "evaluationTime": 1e-7, "lastEvaluation": "2024-12-01T08:00:00Z",
        "type": "recording"});
    let alerting = json!({"state": "firing", "name": "High", "query": "x_total > 1",
        "duration": 300, "keepFiringFor": 0, "labels": {"severity": "page"},
        "annotations": {"summary": "x > 1 & <b>"}, "alerts": [alert], "health": "err",
        "lastError": "boom", "evaluationTime": 0, "lastEvaluation": "0001-01-01T00:00:00Z",
        "type": "alerting"});
    let group = |rules: JsonValue| {
        json!({"groups": [{"name": "g", "file": "rules.yml", "rules": rules, "interval": 60,
            "limit": 0, "evaluationTime": 0.00025, "lastEvaluation": "2024-12-01T08:00:00Z"}]})
    };
    assert_eq!(d, group(json!([recording, alerting])));
    assert_eq!(
        ok(&b, "/api/v1/rules?type=alert").await,
        group(json!([alerting]))
    );
    assert_eq!(
        ok(&b, "/api/v1/rules?type=RECORD").await,
        group(json!([recording]))
    );
    let e = err(&b, "/api/v1/rules?type=x", 400, "bad_data").await;
    assert_eq!(e, r#"invalid parameter "type": not supported value "x""#);
    // Go prints whole floats without ".0" and tiny ones as 1e-7.
    let (_, body, _) = get(&b, "/api/v1/rules?type=record").await;
    assert!(
        body.contains(r#""interval":60,"limit":0,"evaluationTime":0.00025"#),
        "{body}"
    );
    assert!(body.contains(r#""evaluationTime":1e-7"#), "{body}");
}

#[tokio::test]
async fn build_info_metadata_exemplars() {
    let b = serve(router(view())).await;
    let d = ok(&b, "/api/v1/status/buildinfo").await;
    assert_eq!(d["version"], "2.42.0");
    for k in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(d[k].is_string(), "{k}");
    }
    assert_eq!(ok(&b, "/api/v1/metadata").await, json!({}));
    assert_eq!(ok(&b, "/api/v1/query_exemplars?query=up").await, json!([]));
}

#[tokio::test]
async fn the_api_router_serves_it_only_with_rules() {
    let state = |rules| crate::api::ApiState {
        registry: Default::default(),
        ready: Default::default(),
        reloads: None,
        rules,
        taps: crate::tap::Taps::new(&Default::default()),
    };
    let b = serve(crate::api::router(state(None))).await;
    let e = err(&b, "/api/v1/query?query=up", 503, "unavailable").await;
    assert!(e.contains("no alerting section"), "{e}");
    err(&b, "/api/v1/rules", 503, "unavailable").await;
    assert_eq!(
        reqwest::get(format!("{b}/health")).await.unwrap().status(),
        200
    );
    let b = serve(crate::api::router(state(Some(view())))).await;
    ok(&b, "/api/v1/query?query=up&time=1").await;
    assert_eq!(
        reqwest::get(format!("{b}/health")).await.unwrap().status(),
        200
    );
}

#[test]
fn parameters_parse_as_prometheus() {
    assert_eq!(parse_time("1733040000.1234"), Ok(1_733_040_000_123));
    assert_eq!(parse_time("1.0006"), Ok(1001));
    assert_eq!(parse_time("-1.5"), Ok(-1500));
    assert_eq!(parse_time("2024-12-01T08:00:00.5Z"), Ok(1_733_040_000_500));
    assert_eq!(
        parse_time("2024-12-01T09:00:00+01:00"),
        Ok(1_733_040_000_000)
    );
    assert!(parse_time("2024-12-01").is_err());
    assert!(parse_time("").is_err());
    let s = 1_000_000_000i128;
    assert_eq!(parse_duration("15s"), Ok(15 * s));
    assert_eq!(parse_duration("1m30s"), Ok(90 * s));
    assert_eq!(parse_duration("1h5ms"), Ok(3600 * s + 5_000_000));
    assert_eq!(parse_duration("2.5"), Ok(25 * s / 10));
    assert_eq!(parse_duration("0"), Ok(0));
    assert_eq!(parse_duration("1d"), Ok(86_400 * s));
    for bad in ["", "1s1m", "1x", "s", "1m1m", "1e400"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn numbers_and_times_are_written_as_go_writes_them() {
    let w = |j: J| {
        let mut s = String::new();
        j.write(&mut s);
        s
    };
    assert_eq!(w(timestamp(1_733_040_000_120)), "1733040000.120");
    assert_eq!(w(timestamp(1_733_040_000_005)), "1733040000.005");
    assert_eq!(w(timestamp(-1500)), "-1.500");
    assert_eq!(w(timestamp(0)), "0");
    assert_eq!(go_json_float(60.0), "60");
    assert_eq!(go_json_float(1e-7), "1e-7");
    assert_eq!(go_json_float(1.5e-10), "1.5e-10");
    assert_eq!(go_json_float(1e21), "1e+21");
    assert_eq!(go_json_float(0.000001), "0.000001");
    assert_eq!(
        w(rfc3339(Some(1_733_040_000_000))),
        r#""2024-12-01T08:00:00Z""#
    );
    assert_eq!(
        w(rfc3339(Some(1_733_040_000_100))),
        r#""2024-12-01T08:00:00.1Z""#
    );
    assert_eq!(w(rfc3339(None)), r#""0001-01-01T00:00:00Z""#);
    assert_eq!(w(J::str("a\"\\\n\u{1}<")), r#""a\"\\\n\u0001\u003c""#);
}
