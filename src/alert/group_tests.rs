use super::*;
use crate::alert::promql::MemStorage;
use crate::alert::promql::value::is_stale_nan;
use crate::alert::rules;
use crate::alert::state::{AlertState, no_templates};

const M: i64 = 60_000;

fn groups(yaml: &str) -> Vec<GroupEval> {
    let file = rules::from_text(yaml, "t.yml").unwrap_or_else(|e| panic!("{e:?}"));
    file.groups.into_iter().map(GroupEval::new).collect()
}

fn exp() -> Expander<'static> {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    Expander {
        render: &no_templates,
        external_labels: EMPTY.get_or_init(Labels::new),
        external_url: "",
    }
}

fn values(results: &RuleResults, selector: &str, t: i64) -> Vec<String> {
    let expr = crate::alert::promql::parse(selector).unwrap();
    match Engine::new(results).instant(&expr, t).unwrap() {
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect(),
        other => panic!("{other:?}"),
    }
}

const CHAIN: &str = r#"
groups:
- name: first
  rules:
  - record: job:errors:rate1m
    expr: sum by (job) (rate(errors_total[1m]))
  - alert: High
    expr: job:errors:rate1m > 0.5
    for: 1m
    labels: {severity: page}
- name: second
  rules:
  - record: firing:count
    expr: count(ALERTS{alertstate="firing"}) or vector(0)
  - record: doubled
    expr: job:errors:rate1m * 2
"#;

#[test]
fn recording_rules_feed_later_rules_and_groups() {
    let mut base = MemStorage::new();
    base.load(r#"errors_total{job="api",instance="a"}"#, "0+60x10", M)
        .unwrap();
    let mut gs = groups(CHAIN);
    let mut results = RuleResults::for_groups(&[gs[0].group().clone(), gs[1].group().clone()]);
    assert_eq!(results.retention_ms(), 5 * M);

    let out = eval_groups(&mut gs, 0, &base, &mut results, &exp());
    assert!(out.iter().flatten().all(|o| o.error.is_none()), "{out:?}");
    assert!(out[0][0].samples.is_empty(), "rate needs two samples");

    eval_groups(&mut gs, M, &base, &mut results, &exp());
    assert_eq!(
        values(&results, "job:errors:rate1m", M),
        [r#"{__name__="job:errors:rate1m", job="api"} 1"#]
    );
    assert_eq!(
        values(&results, "doubled", M),
        [r#"{__name__="doubled", job="api"} 2"#]
    );
    assert_eq!(gs[0].alerts(1).unwrap().state(), AlertState::Pending);
    assert_eq!(
        values(&results, "firing:count", M),
        [r#"{__name__="firing:count"} 0"#]
    );

    let out = eval_groups(&mut gs, 2 * M, &base, &mut results, &exp());
    assert_eq!(gs[0].alerts(1).unwrap().state(), AlertState::Firing);
    // The second group sees the first group's ALERTS at the same time.
    assert_eq!(
        values(&results, "firing:count", 2 * M),
        [r#"{__name__="firing:count"} 1"#]
    );
    let alerts: Vec<String> = out[0][1]
        .samples
        .iter()
        .map(|s| s.labels.to_string())
        .collect();
    assert_eq!(
        alerts,
        [
            r#"{__name__="ALERTS", alertname="High", alertstate="firing", job="api", severity="page"}"#,
            r#"{__name__="ALERTS_FOR_STATE", alertname="High", job="api", severity="page"}"#,
        ]
    );
}

#[test]
fn vanished_series_get_stale_markers_and_history_is_bounded() {
    let mut base = MemStorage::new();
    base.load(r#"up{job="a"}"#, "1 1 1", M).unwrap();
    let mut gs = groups("groups:\n- name: g\n  rules:\n  - record: r\n    expr: up == 1\n");
    let mut results = RuleResults::for_groups(&[gs[0].group().clone()]);
    // `up` is seen through the 5m lookback until 7m; at 8m it is gone and
    // the recorded series gets a stale marker at once.
    for i in 0..=8 {
        eval_groups(&mut gs, i * M, &base, &mut results, &exp());
    }
    assert_eq!(
        values(&results, "r", 7 * M),
        [r#"{__name__="r", job="a"} 1"#]
    );
    assert!(values(&results, "r", 8 * M).is_empty());
    let s = &results.select(&[], 0, 20 * M)[0].samples;
    let last = *s.last().unwrap();
    assert!(is_stale_nan(last.1) && last.0 == 8 * M, "{s:?}");
    // Only 5m of history is kept: 3m..8m.
    assert_eq!(s.len(), 6, "{s:?}");
    assert_eq!(s[0].0, 3 * M);
    assert_eq!(results.sample_count(), 6);
}

#[test]
fn failing_rule_writes_nothing_and_keeps_its_series() {
    let mut base = MemStorage::new();
    base.load(r#"a{x="1"}"#, "1x5", M).unwrap();
    base.load(r#"b{x="1",y="1"}"#, "1x5", M).unwrap();
    let mut gs = groups(
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: a * on(x) b\n  - alert: S\n    expr: '1'\n",
    );
    let mut results = RuleResults::new(5 * M);
    let out = eval_groups(&mut gs, 0, &base, &mut results, &exp());
    assert!(out[0][0].error.is_none());
    base.load(r#"b{x="1",y="2"}"#, "1x5", M).unwrap();
    let out = eval_groups(&mut gs, M, &base, &mut results, &exp());
    let e = out[0][0].error.as_deref().unwrap();
    assert!(e.contains("many"), "{e}");
    // No stale marker: the series' last sample is the 0m one.
    let r = results.select(
        &[Matcher::new(
            promql_parser::label::MatchOp::Equal,
            "__name__",
            "r",
        )],
        0,
        M,
    );
    assert_eq!(r[0].samples, [(0, 1.0)]);
    // A scalar result is one alert with only the rule's labels.
    let a: Vec<String> = gs[0]
        .alerts(1)
        .unwrap()
        .alerts()
        .map(|a| a.labels.to_string())
        .collect();
    assert_eq!(a, [r#"{alertname="S"}"#]);
}

#[test]
fn limit_applies_to_recorded_series() {
    let mut base = MemStorage::new();
    base.load(r#"m{i="1"}"#, "1", M).unwrap();
    base.load(r#"m{i="2"}"#, "1", M).unwrap();
    let mut gs = groups("groups:\n- name: g\n  limit: 1\n  rules:\n  - record: r\n    expr: m\n");
    let mut results = RuleResults::new(5 * M);
    let out = eval_groups(&mut gs, 0, &base, &mut results, &exp());
    assert_eq!(
        out[0][0].error.as_deref(),
        Some("exceeded limit of 1 with 2 series")
    );
    assert!(results.is_empty());
}

#[test]
fn history_covers_ranges_offsets_and_subqueries() {
    let h = |e: &str| history_ms(&crate::alert::promql::parse(e).unwrap());
    assert_eq!(h("x"), 5 * M);
    assert_eq!(h("x offset 10m"), 15 * M);
    assert_eq!(h("rate(x[1h] offset 10m)"), 70 * M);
    assert_eq!(h("max_over_time(rate(x[5m])[30m:1m])"), 35 * M);
    assert_eq!(h("sum(rate(x[2m])) / on() group_left topk(3, y)"), 5 * M);
    assert_eq!(h("1"), 0);
}

#[test]
fn layered_merges_same_series_rule_sample_wins() {
    let mut base = MemStorage::new();
    base.append(Labels::from_pairs([("__name__", "m")]), 0, 1.0);
    base.append(Labels::from_pairs([("__name__", "m")]), M, 2.0);
    let mut top = RuleResults::new(10 * M);
    top.append(Labels::from_pairs([("__name__", "m")]), M, 20.0);
    top.append(Labels::from_pairs([("__name__", "m")]), 2 * M, 30.0);
    top.append(Labels::from_pairs([("__name__", "m")]), M, 99.0); // out of order: dropped
    let l = Layered {
        base: &base,
        top: &top,
    };
    let s = l.select(&[], 0, 5 * M);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].samples, [(0, 1.0), (M, 20.0), (2 * M, 30.0)]);
}

fn fixture(name: &str) -> Vec<GroupEval> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines/rules")
        .join(name);
    let file = rules::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    file.groups.into_iter().map(GroupEval::new).collect()
}

#[test]
fn plan_rules_fire_as_promtool_says() {
    // protocols.md §3: at 10m HighErrorRate fires with 0.16666666666666669.
    let mut base = MemStorage::new();
    base.load(
        r#"fastapi_requests_total{status_code="500",instance="a"}"#,
        "0+10x20",
        M,
    )
    .unwrap();
    base.load("llm_daily_costs_usd", "50 150x10", M).unwrap();
    let mut gs = fixture("alerting_rules.yml");
    let mut results = RuleResults::for_groups(&[gs[0].group().clone()]);
    assert_eq!(
        results.retention_ms(),
        60 * M,
        "increase(…[1h]) is the longest"
    );
    for i in 0..=10 {
        let out = eval_groups(&mut gs, i * M, &base, &mut results, &exp());
        assert!(out[0].iter().all(|o| o.error.is_none()), "{out:?}");
        let cost = gs[0].alerts(5).unwrap();
        assert_eq!(cost.state() == AlertState::Firing, i >= 1, "at {i}m");
    }
    let rate = gs[0].alerts(1).unwrap();
    let a: Vec<_> = rate.active_alerts().collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].state, AlertState::Firing);
    assert_eq!(
        a[0].labels.to_string(),
        r#"{alertname="HighErrorRate", instance="a", severity="critical", status_code="500"}"#
    );
    assert_eq!(a[0].value, 0.16666666666666669);
    // The histogram rule selects nothing and never fires; no error either.
    assert_eq!(gs[0].alerts(0).unwrap().alerts().count(), 0);
}

#[test]
fn app_rules_evaluate_without_errors() {
    let mut base = MemStorage::new();
    base.load(r#"up{job="feynman-api"}"#, "0x10", M).unwrap();
    let mut gs = fixture("app-alerting-rules.yml");
    let all: Vec<RuleGroup> = gs.iter().map(|g| g.group().clone()).collect();
    let mut results = RuleResults::for_groups(&all);
    for i in 0..=3 {
        let out = eval_groups(&mut gs, i * M, &base, &mut results, &exp());
        let errors: Vec<_> = out
            .iter()
            .flatten()
            .filter_map(|o| o.error.clone())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let down = gs
        .iter()
        .flat_map(|g| (0..g.group().rules.len()).map(move |i| (g, i)))
        .find(|(g, i)| g.group().rules[*i].name == "APIServiceDown")
        .unwrap();
    assert_eq!(down.0.alerts(down.1).unwrap().state(), AlertState::Firing);
}
