//! The query API (`weir::alert::query_api`) against a real client:
//! promtool 2.42's `query instant`, `query range`, `query series` and
//! `query labels` read weir's API over HTTP, and what promtool prints must
//! equal what weir's engine computes for the same expressions (skipped with
//! a message when /usr/bin/promtool is not installed).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value as JsonValue;
use weir::alert::promql::format::format_f;
use weir::alert::promql::{Engine, MemStorage, Storage, Value};
use weir::alert::status::{GroupStatus, RulesView};

fn promtool() -> Option<&'static str> {
    let p = "/usr/bin/promtool";
    Path::new(p).exists().then_some(p)
}

struct View(MemStorage);

impl RulesView for View {
    fn with_storage(&self, f: &mut dyn FnMut(&dyn Storage)) {
        f(&self.0)
    }
    fn groups(&self) -> Vec<GroupStatus> {
        Vec::new()
    }
    fn oldest_ms(&self) -> i64 {
        0
    }
}

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    let series = [
        (r#"x_total{job="a"}"#, "0+10x80"),
        (r#"x_total{job="b"}"#, "0+25x40 1000+7x40"),
        (r#"h_bucket{job="a", le="0.1"}"#, "0+1x80"),
        (r#"h_bucket{job="a", le="0.5"}"#, "0+3x80"),
        (r#"h_bucket{job="a", le="1"}"#, "0+5x80"),
        (r#"h_bucket{job="a", le="+Inf"}"#, "0+6x80"),
        (r#"up{job="a"}"#, "1x80"),
        (r#"up{job="b"}"#, "0x40 1x40"),
    ];
    for (name, values) in series {
        s.load(name, values, 15_000).unwrap();
    }
    s
}

/// Serves the query API on a free port of 127.0.0.1 from a runtime kept
/// alive by the caller.
fn serve(rt: &tokio::runtime::Runtime) -> String {
    let view: Arc<dyn RulesView> = Arc::new(View(storage()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = weir::alert::query_api::router(view);
    rt.spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

fn run(promtool: &str, args: &[&str]) -> String {
    let out = Command::new(promtool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Series as (labels, [(t_ms, value as Go's 'f' prints it)]), sorted.
type Flat = Vec<(BTreeMap<String, String>, Vec<(i64, String)>)>;

fn flatten_engine(v: &Value) -> Flat {
    let labels = |l: &weir::alert::promql::Labels| {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut out: Flat = match v {
        Value::Scalar { t, v } => vec![(BTreeMap::new(), vec![(*t, format_f(*v))])],
        Value::String { .. } => panic!("no strings here"),
        Value::Vector(vec) => vec
            .iter()
            .map(|s| (labels(&s.labels), vec![(s.t, format_f(s.v))]))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let points = s.samples.iter().map(|(t, v)| (*t, format_f(*v)));
                (labels(&s.labels), points.collect())
            })
            .collect(),
    };
    out.sort();
    out
}

/// What `promtool query -o json` printed, as [`Flat`].
fn flatten_promtool(printed: &str) -> Flat {
    let v: JsonValue = serde_json::from_str(printed.trim()).unwrap();
    let point = |p: &JsonValue| {
        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
        (t, p[1].as_str().unwrap().to_string())
    };
    let labels = |m: &JsonValue| {
        m.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut out: Flat = match &v {
        JsonValue::Array(items) if items.len() == 2 && items[0].is_number() => {
            vec![(BTreeMap::new(), vec![point(&v)])]
        }
        JsonValue::Array(items) => items
            .iter()
            .map(|s| {
                let points = match s.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                (labels(&s["metric"]), points)
            })
            .collect(),
        JsonValue::Null => Vec::new(),
        other => panic!("unexpected promtool output {other}"),
    };
    out.sort();
    out
}

const INSTANT: [&str; 11] = [
    "x_total",
    "rate(x_total[5m])",
    "increase(x_total[2m])",
    "sum by (le) (rate(h_bucket[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
    "scalar(sum(up))",
    "x_total > 500",
    "up == bool 1",
    "x_total / 0",
    "vector(0) / 0",
    "x_total[1m]",
];

const RANGE: [&str; 5] = [
    "rate(x_total[5m])",
    "histogram_quantile(0.5, rate(h_bucket[5m]))",
    "sum(up)",
    "time()",
    "x_total > bool 500",
];

#[test]
fn promtool_reads_what_the_engine_computes() {
    let Some(promtool) = promtool() else {
        eprintln!("skipping: /usr/bin/promtool not installed");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = serve(&rt);
    let store = storage();
    let engine = Engine::new(&store);

    for t_s in [600, 750] {
        for expr in INSTANT {
            let parsed = weir::alert::promql::parse(expr).unwrap();
            let want = flatten_engine(&engine.instant(&parsed, t_s * 1000).unwrap());
            assert!(!want.is_empty(), "{expr} at {t_s} is empty: a weak check");
            let time = format!("--time={t_s}");
            let said = run(
                promtool,
                &["query", "instant", "-o", "json", &time, &url, expr],
            );
            assert_eq!(flatten_promtool(&said), want, "{expr} at {t_s}");
        }
    }

    for expr in RANGE {
        let parsed = weir::alert::promql::parse(expr).unwrap();
        let m = engine.range(&parsed, 300_000, 1_200_000, 30_000).unwrap();
        let want = flatten_engine(&Value::Matrix(m));
        assert!(!want.is_empty(), "range {expr} is empty: a weak check");
        let args = [
            "query",
            "range",
            "-o",
            "json",
            "--start=300",
            "--end=1200",
            "--step=30s",
            &url,
            expr,
        ];
        let said = run(promtool, &args);
        assert_eq!(flatten_promtool(&said), want, "range {expr}");
    }

    // promtool's own text output of a vector.
    let said = run(promtool, &["query", "instant", "--time=600", &url, "up"]);
    assert_eq!(
        said,
        "up{job=\"a\"} => 1 @[600]\nup{job=\"b\"} => 0 @[600]\n"
    );
}

#[test]
fn promtool_lists_series_and_label_values() {
    let Some(promtool) = promtool() else {
        eprintln!("skipping: /usr/bin/promtool not installed");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = serve(&rt);
    let span = ["--start=0", "--end=1200"];
    let said = run(
        promtool,
        &[
            "query",
            "series",
            "--match=x_total",
            "--match=up{job=\"b\"}",
            span[0],
            span[1],
            &url,
        ],
    );
    let mut lines: Vec<&str> = said.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{__name__="up", job="b"}"#,
            r#"{__name__="x_total", job="a"}"#,
            r#"{__name__="x_total", job="b"}"#,
        ]
    );
    let said = run(promtool, &["query", "labels", span[0], span[1], &url, "le"]);
    assert_eq!(said, "+Inf\n0.1\n0.5\n1\n");
    let said = run(
        promtool,
        &["query", "labels", span[0], span[1], &url, "__name__"],
    );
    assert_eq!(said, "h_bucket\nup\nx_total\n");
    let said = run(
        promtool,
        &[
            "query",
            "labels",
            "--match=up",
            span[0],
            span[1],
            &url,
            "job",
        ],
    );
    assert_eq!(said, "a\nb\n");
}
