use super::*;

fn pipeline() -> Pipeline {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/feynman.yaml"
    ))
    .unwrap();
    Pipeline::from_text(&text, "feynman.yaml", |_| None).unwrap()
}

fn lq(expr: &str) -> Result<String, String> {
    let p = pipeline();
    let src = Source::new(&p, Some("{app=\"feynman\"}")).unwrap();
    rewrite(&src, &promql_parser::parser::parse(expr).unwrap())
}

const SEL: &str = "{app=\"feynman\"} | json";

#[test]
fn rate_and_increase_of_counters() {
    assert_eq!(
        lq("rate(agent_tool_errors_total[5m]) > 0.05").unwrap(),
        format!(
            "sum by (tool_name, error_type) (rate({SEL} | event=\"tool_call\" | status=\"error\" [5m])) > 0.05"
        )
    );
    assert_eq!(
        lq("increase(agent_tool_errors_total[2m])").unwrap(),
        format!(
            "sum by (tool_name, error_type) (count_over_time({SEL} | event=\"tool_call\" | status=\"error\" [2m]))"
        )
    );
    // Two rules feed one counter: a union of disjoint series, summed.
    assert_eq!(
        lq("rate(fastapi_requests_total{status_code=~\"5..\"}[5m]) > 0.1").unwrap(),
        format!(
            "sum by (method, endpoint, status_code) (rate({SEL} | event=\"api_request\" | label_format endpoint=path | status_code=~\"5..\" [5m]) or rate({SEL} | event=\"api_error\" | label_format endpoint=path, status_code=\"500\" | status_code=~\"5..\" [5m])) > 0.1"
        )
    );
    assert_eq!(
        lq("increase(sse_disconnects_total[1h] offset 1h)").unwrap(),
        format!(
            "sum by (reason) (count_over_time({SEL} | event=\"sse_disconnect\" [1h] offset 1h))"
        )
    );
}

#[test]
fn aggregations_fold_into_one_sum_and_binaries_keep_their_shape() {
    assert_eq!(
        lq("sum(rate(agent_tool_calls_total{status=\"error\"}[5m])) by (tool_name) / sum(rate(agent_tool_calls_total[5m])) by (tool_name)").unwrap(),
        format!("sum by (tool_name) (rate({SEL} | event=\"tool_call\" | status=\"error\" [5m])) / sum by (tool_name) (rate({SEL} | event=\"tool_call\" [5m]))")
    );
    // A label the metric lacks is empty: grouping by it groups by nothing.
    assert_eq!(
        lq("sum(rate(sse_messages_total[1m])) by (instance) > 10").unwrap(),
        format!("sum (rate({SEL} | event=\"sse_message\" [1m])) > 10")
    );
    assert_eq!(
        lq("max by (tool_name) (rate(agent_tool_errors_total[5m])) * 60").unwrap(),
        format!(
            "max by (tool_name) (sum by (tool_name, error_type) (rate({SEL} | event=\"tool_call\" | status=\"error\" [5m]))) * 60"
        )
    );
    assert_eq!(
        lq("topk(3, sum by (tool_name) (increase(agent_tool_errors_total[1h])))").unwrap(),
        format!(
            "topk (3, sum by (tool_name) (count_over_time({SEL} | event=\"tool_call\" | status=\"error\" [1h])))"
        )
    );
    assert_eq!(
        lq("(rate(agent_tool_errors_total[5m]) > bool 1) == 1").unwrap(),
        format!(
            "(sum by (tool_name, error_type) (rate({SEL} | event=\"tool_call\" | status=\"error\" [5m])) > bool 1) == 1"
        )
    );
}

#[test]
fn histogram_quantiles() {
    assert_eq!(
        lq("histogram_quantile(0.95, rate(agent_tool_call_duration_seconds_bucket[5m])) > 10")
            .unwrap(),
        format!(
            "(quantile_over_time(0.95, {SEL} | event=\"tool_call\" | status=\"success\" | unwrap duration_ms | __error__=\"\" [5m]) by (tool_name) / 1000) > 10"
        )
    );
    assert_eq!(
        lq("histogram_quantile(0.5, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m])))").unwrap(),
        format!("quantile_over_time(0.5, {SEL} | event=\"api_request\" | unwrap duration_ms | __error__=\"\" [5m]) by () / 1000")
    );
    // No scale: nothing after the quantile.
    assert_eq!(
        lq("histogram_quantile(0.9, rate(sse_connection_duration_seconds_bucket[10m]))").unwrap(),
        format!(
            "quantile_over_time(0.9, {SEL} | event=\"sse_disconnect\" | unwrap duration_s | __error__=\"\" [10m]) by ()"
        )
    );
}

#[test]
fn refusals_say_why() {
    let why = |e: &str| lq(e).unwrap_err();
    assert!(why("sse_connections_active > 50").contains("gauge"));
    assert!(why("up{job=\"x\"} == 0").contains("scrape health"));
    assert!(why("rate(weir_events_total[5m]) > 0").contains("self-metrics"));
    assert!(why("increase(llm_tokens_used_total[1h]) > 1").contains("cost counter"));
    assert!(why("fastapi_requests_total > 1").contains("rate()/increase()"));
    assert!(why("irate(agent_tool_errors_total[5m]) > 1").contains("irate"));
    assert!(
        why("histogram_quantile(0.95, fastapi_request_duration_seconds) > 5")
            .contains("histogram's name")
    );
    assert!(why("rate(fastapi_request_duration_seconds_count[5m])").contains("_sum and _count"));
    // A regex-capture label is refused only when the query keeps it.
    assert!(lq("sum(rate(external_api_errors_total[5m]))").is_ok());
    assert!(why("rate(external_api_errors_total[5m])").contains("regex capture"));
    assert!(why("rate(agent_tool_errors_total{nope=\"x\"}[5m])").contains("never matches"));
    assert!(why("rate(a_b[5m]) / 2").contains("not derived"));
    assert!(
        why("rate(agent_tool_errors_total[5m]) / on(tool_name) rate(agent_tool_calls_total[5m])")
            .contains("on()/ignoring()")
    );
    assert!(why("max_over_time(rate(agent_tool_errors_total[5m])[1h:])").contains("not mapped"));
    assert!(why("-rate(agent_tool_errors_total[5m])").contains("unary"));
}
