//! Unit tests; expected strings are Prometheus 2.42's (checked with
//! promtool where noted; `tests/templates.rs` holds the full differential
//! suite).

use std::collections::BTreeMap;

use super::funcs::{humanize, humanize_duration, humanize1024, parse_duration, title};
use super::*;

fn data(value: f64) -> AlertData {
    let mut labels = BTreeMap::new();
    labels.insert("instance".to_string(), "10.0.0.7:8000".to_string());
    labels.insert("job".to_string(), "api".to_string());
    let mut external_labels = BTreeMap::new();
    external_labels.insert("region".to_string(), "eu".to_string());
    AlertData {
        labels,
        external_labels,
        external_url: "http://prom.example.com:9090/prefix".to_string(),
        value,
    }
}

fn render(text: &str, value: f64) -> String {
    Template::parse("__alert_T", text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .expand(&data(value))
}

#[test]
fn humanize_matches_prometheus() {
    let cases = [
        (0.0, "0"),
        (1.0, "1"),
        (999.0, "999"),
        (1000.0, "1k"),
        (1234567.0, "1.235M"),
        (-1234567.0, "-1.235M"),
        (0.001234, "1.234m"),
        (0.5, "500m"),
        (1e-30, "1e-06y"),
        (1e30, "1e+06Y"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (12345.678, "12.35k"),
    ];
    for (v, want) in cases {
        assert_eq!(humanize(v), want, "{v}");
    }
}

#[test]
fn humanize1024_matches_prometheus() {
    assert_eq!(humanize1024(1023.0), "1023");
    assert_eq!(humanize1024(1024.0), "1ki");
    assert_eq!(humanize1024(1048576.0), "1Mi");
    assert_eq!(humanize1024(-2048.0), "-2ki");
    assert_eq!(humanize1024(0.75), "0.75");
    assert_eq!(humanize1024(1.0), "1");
}

#[test]
fn humanize_duration_matches_prometheus() {
    let cases = [
        (0.0, "0s"),
        (0.25, "250ms"),
        (-0.25, "-250ms"),
        (7.25, "7.25s"),
        (59.9, "59.9s"),
        (61.0, "1m 1s"),
        (3600.0, "1h 0m 0s"),
        (86400.0, "1d 0h 0m 0s"),
        (90061.5, "1d 1h 1m 1s"),
        (-90061.0, "-1d 1h 1m 1s"),
        (0.0000123, "12.3us"),
        (f64::NAN, "NaN"),
    ];
    for (v, want) in cases {
        assert_eq!(humanize_duration(v), want, "{v}");
    }
}

#[test]
fn percentage_timestamp_and_time() {
    assert_eq!(
        render("{{ humanizePercentage $value }}", 0.16666666666666669),
        "16.67%"
    );
    assert_eq!(render("{{ humanizePercentage $value }}", 1.0), "100%");
    assert_eq!(
        render("{{ humanizeTimestamp $value }}", 1681234567.891),
        "2023-04-11 17:36:07.891 +0000 UTC"
    );
    assert_eq!(
        render("{{ humanizeTimestamp $value }}", 0.0),
        "1970-01-01 00:00:00 +0000 UTC"
    );
    assert_eq!(render("{{ humanizeTimestamp $value }}", f64::NAN), "NaN");
    assert_eq!(
        render("{{ toTime $value }}", 1.5),
        "1970-01-01 00:00:01.5 +0000 UTC"
    );
}

#[test]
fn value_prints_as_go_v() {
    assert_eq!(render("{{ $value }}", 1e6), "1e+06");
    assert_eq!(render("{{ $value }}", 999999.0), "999999");
    assert_eq!(render("{{ $value }}", 1234567.0), "1.234567e+06");
    assert_eq!(render("{{ $value }}", 0.0001), "0.0001");
    assert_eq!(render("{{ $value }}", 0.00001), "1e-05");
    assert_eq!(render("{{ .Value }}", f64::INFINITY), "+Inf");
    assert_eq!(render("{{ $value }}", f64::NAN), "NaN");
}

#[test]
fn printf_verbs() {
    assert_eq!(
        render(r#"{{ printf "%.2f" $value }}"#, 1234.5678),
        "1234.57"
    );
    assert_eq!(render(r#"{{ printf "%d%%" 50 }}"#, 0.0), "50%");
    assert_eq!(
        render(
            r#"{{ printf "%8.2f|%-8.2f|%08.2f" $value $value $value }}"#,
            -1.5
        ),
        "   -1.50|-1.50   |-0001.50"
    );
    assert_eq!(
        render(r#"{{ printf "%d" $value }}"#, 1.5),
        "%!d(float64=1.5)"
    );
    assert_eq!(
        render(r#"{{ printf "%s" $value }}"#, 1.5),
        "%!s(float64=1.5)"
    );
    assert_eq!(render(r#"{{ printf "%q" "a\"b" }}"#, 0.0), r#""a\"b""#);
    assert_eq!(
        render(r#"{{ printf "%x %X %05d" 255 255 42 }}"#, 0.0),
        "ff FF 00042"
    );
    assert_eq!(render(r#"{{ printf "%d %d" 1 }}"#, 0.0), "1 %!d(MISSING)");
    assert_eq!(render(r#"{{ printf "%d" 1 2 }}"#, 0.0), "1%!(EXTRA int=2)");
    assert_eq!(
        render(r#"{{ printf "%.4g|%g|%e" 123456.0 1e6 1.5 }}"#, 0.0),
        "1.235e+05|1e+06|1.500000e+00"
    );
    assert_eq!(
        render(r#"{{ printf "%10s|%.3s" "abc" "abcdef" }}"#, 0.0),
        "       abc|abc"
    );
    assert_eq!(
        render(r#"{{ printf "%v" $labels }}"#, 0.0),
        "map[instance:10.0.0.7:8000 job:api]"
    );
}

#[test]
fn string_functions() {
    assert_eq!(
        title("hello wORLD foo-bar_baz 中文 x.y"),
        "Hello WORLD Foo-Bar_baz 中文 X.Y"
    );
    assert_eq!(
        render(r#"{{ toUpper "abc Straße" }}|{{ toLower "ÀBC" }}"#, 0.0),
        "ABC STRAßE|àbc"
    );
    assert_eq!(
        render("{{ $labels.instance | stripPort }}", 0.0),
        "10.0.0.7"
    );
    assert_eq!(
        render(
            r#"{{ stripPort "[::1]:80" }}|{{ stripPort "nohost" }}"#,
            0.0
        ),
        "::1|nohost"
    );
    assert_eq!(
        render(r#"{{ stripDomain "foo.example.com:9090" }}"#, 0.0),
        "foo:9090"
    );
    assert_eq!(
        render(r#"{{ match "^10\\." $labels.instance }}"#, 0.0),
        "true"
    );
    assert_eq!(
        render(
            r#"{{ reReplaceAll "(.*):(\\d+)" "$1 port $2" $labels.instance }}"#,
            0.0
        ),
        "10.0.0.7 port 8000"
    );
    assert_eq!(
        render(r#"{{ safeHtml "<b>" }}|{{ html "<b>" }}"#, 0.0),
        "<b>|&lt;b&gt;"
    );
    assert_eq!(
        render(r#"{{ graphLink "up == 0" }}"#, 0.0),
        "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
    );
    assert_eq!(
        render(
            r#"{{ with args 1 "a" }}{{ .arg0 }} {{ .arg1 }} {{ .arg2 }}{{ end }}"#,
            0.0
        ),
        "1 a <no value>"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1h30m"), Some(5_400_000));
    assert_eq!(parse_duration("500ms"), Some(500));
    assert_eq!(parse_duration("1w2d"), Some(9 * 86_400_000));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("1m1h"), None);
    assert_eq!(parse_duration("1x"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(render(r#"{{ parseDuration "1h30m" }}"#, 0.0), "5400");
}

#[test]
fn external_url_and_labels() {
    assert_eq!(
        render("{{ $externalLabels.region }}|{{ $externalURL }}", 0.0),
        "eu|http://prom.example.com:9090/prefix"
    );
    // promtool passes no URL here (it panics); Prometheus returns it.
    assert_eq!(
        render("{{ externalURL }}|{{ pathPrefix }}", 0.0),
        "http://prom.example.com:9090/prefix|/prefix"
    );
}

#[test]
fn control_flow_and_variables() {
    assert_eq!(
        render(
            "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
            64.5
        ),
        "mid"
    );
    assert_eq!(
        render(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        ),
        "instance=10.0.0.7:8000;job=api;"
    );
    assert_eq!(
        render(
            "{{ with $labels.nope }}y{{ else }}n{{ end }}[{{ $labels.nope }}]",
            0.0
        ),
        "n[]"
    );
    assert_eq!(
        render(
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            0.0
        ),
        "2"
    );
    assert_eq!(
        render("a  {{- \" b \" -}}  c {{/* x */}} d", 0.0),
        "a b c  d"
    );
    assert_eq!(
        render(
            "{{ and 1 0 }}|{{ or \"\" \"def\" }}|{{ not 0 }}|{{ len $labels }}",
            0.0
        ),
        "0|def|true|2"
    );
    assert_eq!(
        render(
            r#"{{ eq $labels.job "db" "api" }}|{{ index $labels "job" }}"#,
            0.0
        ),
        "true|api"
    );
}

#[test]
fn execution_errors_look_like_go() {
    assert_eq!(
        render(r#"{{ humanize "abc" }}"#, 0.0),
        "<error expanding template: error executing template __alert_T: template: __alert_T:1:115: \
         executing \"__alert_T\" at <humanize \"abc\">: error calling humanize: strconv.ParseFloat: \
         parsing \"abc\": invalid syntax>"
    );
    assert_eq!(
        render("{{ toUpper $value }}", 0.0),
        "<error expanding template: error executing template __alert_T: template: __alert_T:1:123: \
         executing \"__alert_T\" at <$value>: wrong type for value; expected string; got float64>"
    );
    assert!(
        render("{{ gt $value 1 }}", 0.0)
            .ends_with("error calling gt: incompatible types for comparison>")
    );
    assert!(
        render("x\n{{ .Nope }}", 0.0).contains(
            "__alert_T:2:3: executing \"__alert_T\" at <.Nope>: can't evaluate field Nope"
        )
    );
}

#[test]
fn query_needs_a_callback() {
    let t = Template::parse("__alert_T", r#"{{ query "up" | first | value }}"#).unwrap();
    let e = t.render(&data(0.0)).unwrap_err();
    assert!(
        e.ends_with("error calling query: query is not supported in weir templates yet"),
        "{e}"
    );
    let q = |expr: &str| -> Result<Vec<QuerySample>, String> {
        assert_eq!(expr, "up");
        let mk = |i: &str, v| QuerySample {
            labels: [("instance".to_string(), i.to_string())]
                .into_iter()
                .collect(),
            value: v,
        };
        Ok(vec![mk("b", 0.0), mk("a", 1.0)])
    };
    assert_eq!(t.render_with_query(&data(0.0), &q).unwrap(), "0");
    let t = Template::parse(
        "__alert_T",
        r#"{{ range query "up" | sortByLabel "instance" }}{{ label "instance" . }}={{ .Value }} {{ end }}"#,
    )
    .unwrap();
    assert_eq!(t.render_with_query(&data(0.0), &q).unwrap(), "a=1 b=0 ");
}

#[test]
fn parse_errors_look_like_promtool() {
    // As `promtool check rules` 2.42 reports them (after the rule prefix).
    let cases = [
        (
            "{{ foo }}",
            "template: __alert_:1: function \"foo\" not defined",
        ),
        ("{{ if true }}x", "template: __alert_:1: unexpected EOF"),
        ("{{ end }}", "template: __alert_:1: unexpected {{end}}"),
        ("{{ $value", "template: __alert_:1: unclosed action"),
        (
            "{{ $x }}",
            "template: __alert_:1: undefined variable \"$x\"",
        ),
        (
            "{{ if }}{{ end }}",
            "template: __alert_:1: missing value for if",
        ),
        ("{{ else }}", "template: __alert_:1: unexpected {{else}}"),
        (
            "{{ printf \"a\" | 3 }}",
            "template: __alert_:1: non executable command in pipeline stage 2",
        ),
        (
            "a\n{{ \"x }}",
            "template: __alert_:2: unterminated quoted string",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(check(text).unwrap_err(), want, "{text}");
    }
    assert!(check("{{ $value | humanizePercentage }} {{ $labels.x }}").is_ok());
}

#[test]
fn plan_annotations_render() {
    let mut d = data(0.16666666666666669);
    d.labels.insert("tool_name".into(), "web_search".into());
    let t = Template::parse(
        "__alert_T",
        "5分钟内API错误率 {{ $value | humanizePercentage }} 超过5%阈值",
    )
    .unwrap();
    assert_eq!(t.render(&d).unwrap(), "5分钟内API错误率 16.67% 超过5%阈值");
    let t = Template::parse("__alert_T", "5分钟内API错误率 {{ $value }}，超过10%阈值").unwrap();
    assert_eq!(
        t.render(&d).unwrap(),
        "5分钟内API错误率 0.16666666666666669，超过10%阈值"
    );
    let t = Template::parse("__alert_T", "工具 {{ $labels.tool_name }} 失败率过高").unwrap();
    assert_eq!(t.render(&d).unwrap(), "工具 web_search 失败率过高");
}
