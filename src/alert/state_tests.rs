use super::*;

const M: i64 = 60_000;

fn sample(pairs: &[(&str, &str)], v: f64) -> Sample {
    Sample {
        labels: Labels::from_pairs(pairs.iter().copied()),
        t: 0,
        v,
    }
}

fn exp() -> Expander<'static> {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    Expander {
        render: &no_templates,
        external_labels: EMPTY.get_or_init(Labels::new),
        external_url: "",
    }
}

struct Rule {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    for_ms: i64,
    keep_ms: i64,
}

impl Rule {
    fn new(for_ms: i64) -> Self {
        Rule {
            labels: vec![("severity".into(), "critical".into())],
            annotations: vec![("summary".into(), "high".into())],
            for_ms,
            keep_ms: 0,
        }
    }
    fn def(&self) -> AlertRuleDef<'_> {
        AlertRuleDef {
            name: "High",
            for_ms: self.for_ms,
            keep_firing_for_ms: self.keep_ms,
            labels: &self.labels,
            annotations: &self.annotations,
        }
    }
}

/// `ALERTS…` samples printed as `name{labels} value`.
fn show(v: &Vector) -> Vec<String> {
    v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect()
}

fn states(st: &AlertRuleState) -> Vec<AlertState> {
    st.alerts().map(|a| a.state).collect()
}

#[test]
fn pending_then_firing_after_for_with_alerts_series() {
    let rule = Rule::new(2 * M);
    let mut st = AlertRuleState::new();
    let input = [sample(&[("__name__", "errors"), ("instance", "a")], 0.5)];
    let out = st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap();
    assert_eq!(
        show(&out),
        [
            r#"{__name__="ALERTS", alertname="High", alertstate="pending", instance="a", severity="critical"} 1"#,
            r#"{__name__="ALERTS_FOR_STATE", alertname="High", instance="a", severity="critical"} 0"#,
        ]
    );
    assert_eq!(out[0].t, 0);
    st.eval(&rule.def(), M, &input, 0, &exp()).unwrap();
    assert_eq!(states(&st), [AlertState::Pending]);
    let out = st.eval(&rule.def(), 2 * M, &input, 0, &exp()).unwrap();
    assert_eq!(states(&st), [AlertState::Firing]);
    assert!(show(&out)[0].contains(r#"alertstate="firing""#), "{out:?}");
    // ALERTS_FOR_STATE keeps the time it became active, in seconds.
    let out = st.eval(&rule.def(), 3 * M, &input, 0, &exp()).unwrap();
    assert_eq!(out[1].v, 0.0);
    let a = st.alerts().next().unwrap();
    assert_eq!((a.active_at, a.fired_at), (0, Some(2 * M)));
    assert_eq!(
        a.labels.to_string(),
        r#"{alertname="High", instance="a", severity="critical"}"#
    );
    assert_eq!(a.annotations, [("summary".to_string(), "high".to_string())]);
}

#[test]
fn for_zero_fires_at_once_and_active_at_is_in_seconds() {
    let rule = Rule::new(0);
    let mut st = AlertRuleState::new();
    let out = st
        .eval(&rule.def(), 90_500, &[sample(&[], 101.0)], 0, &exp())
        .unwrap();
    assert_eq!(states(&st), [AlertState::Firing]);
    assert_eq!(out[1].v, 90.0);
    assert_eq!(out[1].t, 90_500);
}

#[test]
fn pending_that_vanishes_is_deleted() {
    let rule = Rule::new(5 * M);
    let mut st = AlertRuleState::new();
    st.eval(&rule.def(), 0, &[sample(&[], 1.0)], 0, &exp())
        .unwrap();
    let out = st.eval(&rule.def(), M, &[], 0, &exp()).unwrap();
    assert!(out.is_empty());
    assert_eq!(st.alerts().count(), 0);
    assert_eq!(st.state(), AlertState::Inactive);
}

#[test]
fn firing_resolves_is_kept_fifteen_minutes_and_refires_fresh() {
    let rule = Rule::new(M);
    let mut st = AlertRuleState::new();
    let input = [sample(&[("job", "x")], 1.0)];
    st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap();
    st.eval(&rule.def(), M, &input, 0, &exp()).unwrap();
    assert_eq!(states(&st), [AlertState::Firing]);
    let out = st.eval(&rule.def(), 2 * M, &[], 0, &exp()).unwrap();
    assert!(out.is_empty(), "no ALERTS series once resolved");
    let a = st.alerts().next().unwrap();
    assert_eq!(
        (a.state, a.resolved_at),
        (AlertState::Inactive, Some(2 * M))
    );
    assert_eq!(st.active_alerts().count(), 0);
    // Kept while ts - resolved_at <= 15m, deleted after.
    st.eval(&rule.def(), 17 * M, &[], 0, &exp()).unwrap();
    assert_eq!(st.alerts().count(), 1);
    st.eval(&rule.def(), 18 * M, &[], 0, &exp()).unwrap();
    assert_eq!(st.alerts().count(), 0);

    // A resolved alert that comes back is a new pending alert.
    let mut st = AlertRuleState::new();
    st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap();
    st.eval(&rule.def(), M, &input, 0, &exp()).unwrap();
    st.eval(&rule.def(), 2 * M, &[], 0, &exp()).unwrap();
    let out = st.eval(&rule.def(), 3 * M, &input, 0, &exp()).unwrap();
    let a = st.alerts().next().unwrap();
    assert_eq!(
        (a.state, a.active_at, a.resolved_at),
        (AlertState::Pending, 3 * M, None)
    );
    assert_eq!(out[1].v, 180.0);
    st.eval(&rule.def(), 4 * M, &input, 0, &exp()).unwrap();
    assert_eq!(states(&st), [AlertState::Firing]);
}

#[test]
fn keep_firing_for_counts_from_first_missing_evaluation() {
    let mut rule = Rule::new(0);
    rule.keep_ms = 2 * M;
    let mut st = AlertRuleState::new();
    let input = [sample(&[], 1.0)];
    st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap();
    // Missing at 1m and 2m: still firing (0m, 1m < 2m since 1m).
    for t in [M, 2 * M] {
        let out = st.eval(&rule.def(), t, &[], 0, &exp()).unwrap();
        assert_eq!(out.len(), 2, "at {t}");
        assert!(show(&out)[0].contains("firing"));
        assert_eq!(st.alerts().next().unwrap().keep_firing_since, Some(M));
    }
    // Back at 3m: the countdown resets.
    st.eval(&rule.def(), 3 * M, &input, 0, &exp()).unwrap();
    assert_eq!(st.alerts().next().unwrap().keep_firing_since, None);
    st.eval(&rule.def(), 4 * M, &[], 0, &exp()).unwrap();
    st.eval(&rule.def(), 5 * M, &[], 0, &exp()).unwrap();
    assert_eq!(states(&st), [AlertState::Firing]);
    // 6m - 4m = 2m, not < 2m: resolved.
    let out = st.eval(&rule.def(), 6 * M, &[], 0, &exp()).unwrap();
    assert!(out.is_empty());
    let a = st.alerts().next().unwrap();
    assert_eq!(
        (a.state, a.resolved_at),
        (AlertState::Inactive, Some(6 * M))
    );
}

#[test]
fn keep_firing_for_does_not_hold_pending_alerts() {
    let mut rule = Rule::new(5 * M);
    rule.keep_ms = 10 * M;
    let mut st = AlertRuleState::new();
    st.eval(&rule.def(), 0, &[sample(&[], 1.0)], 0, &exp())
        .unwrap();
    st.eval(&rule.def(), M, &[], 0, &exp()).unwrap();
    assert_eq!(st.alerts().count(), 0);
}

#[test]
fn value_and_annotations_update_while_active() {
    let mut rule = Rule::new(10 * M);
    rule.annotations = vec![("v".into(), "{{ $value }}".into())];
    let render = |t: &str, d: &AlertData| Ok(t.replace("{{ $value }}", &d.value.to_string()));
    let labels = Labels::new();
    let exp = Expander {
        render: &render,
        external_labels: &labels,
        external_url: "",
    };
    let mut st = AlertRuleState::new();
    st.eval(&rule.def(), 0, &[sample(&[], 1.0)], 0, &exp)
        .unwrap();
    st.eval(&rule.def(), M, &[sample(&[], 2.0)], 0, &exp)
        .unwrap();
    let a = st.alerts().next().unwrap();
    assert_eq!((a.value, a.active_at), (2.0, 0));
    assert_eq!(a.annotations, [("v".to_string(), "2".to_string())]);
}

#[test]
fn templated_labels_render_and_errors_show_in_place() {
    let mut rule = Rule::new(0);
    rule.labels = vec![
        ("empty".into(), "{{ nothing }}".into()),
        ("inst".into(), "{{ $labels.instance }}".into()),
        ("plain".into(), "x".into()),
        ("bad".into(), "{{ fail }}".into()),
    ];
    let render = |t: &str, d: &AlertData| match t {
        "{{ $labels.instance }}" => Ok(d.labels.get("instance").to_uppercase()),
        "{{ nothing }}" => Ok(String::new()),
        _ => Err("boom".into()),
    };
    let none = Labels::new();
    let exp = Expander {
        render: &render,
        external_labels: &none,
        external_url: "",
    };
    let mut st = AlertRuleState::new();
    st.eval(
        &rule.def(),
        0,
        &[sample(&[("instance", "a")], 1.0)],
        0,
        &exp,
    )
    .unwrap();
    let a = st.alerts().next().unwrap();
    assert_eq!(
        a.labels.to_string(),
        r#"{alertname="High", bad="<error expanding template: boom>", inst="A", instance="a", plain="x"}"#
    );
}

#[test]
fn same_labelset_twice_is_an_error() {
    let mut rule = Rule::new(0);
    rule.labels = vec![("instance".into(), "same".into())];
    let mut st = AlertRuleState::new();
    let input = [
        sample(&[("instance", "a")], 1.0),
        sample(&[("instance", "b")], 1.0),
    ];
    let e = st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap_err();
    assert!(
        e.contains("same labelset after applying alert labels"),
        "{e}"
    );
}

#[test]
fn limit_counts_pending_and_firing_and_clears_on_excess() {
    let rule = Rule::new(0);
    let mut st = AlertRuleState::new();
    let two = [sample(&[("i", "a")], 1.0), sample(&[("i", "b")], 1.0)];
    assert!(st.eval(&rule.def(), 0, &two, 2, &exp()).is_ok());
    let e = st.eval(&rule.def(), M, &two, 1, &exp()).unwrap_err();
    assert_eq!(e, "exceeded limit of 1 with 2 alerts");
    assert_eq!(st.alerts().count(), 0);
}

#[test]
fn due_for_sending_never_pending_resent_after_delay_and_on_resolve() {
    let rule = Rule::new(M);
    let mut st = AlertRuleState::new();
    let input = [sample(&[], 1.0)];
    st.eval(&rule.def(), 0, &input, 0, &exp()).unwrap();
    assert!(st.take_due(0, M, M).is_empty(), "pending is never sent");
    st.eval(&rule.def(), M, &input, 0, &exp()).unwrap();
    let sent = st.take_due(M, M, M);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].valid_until, Some(5 * M));
    st.eval(&rule.def(), 2 * M, &input, 0, &exp()).unwrap();
    assert!(
        st.take_due(2 * M, M, M).is_empty(),
        "lastSent + 1m is not before 2m"
    );
    st.eval(&rule.def(), 2 * M + 1, &[], 0, &exp()).unwrap();
    assert_eq!(
        st.take_due(2 * M + 1, M, M).len(),
        1,
        "resolved is sent at once"
    );
}

#[test]
fn restored_alerts_wait_for_their_series_then_go_on_where_they_were() {
    let rule = Rule::new(5 * M);
    let hit = [sample(&[("job", "a")], 1.0)];
    // Before the restart: pending since 0.
    let mut before = AlertRuleState::new();
    before.eval(&rule.def(), 0, &hit, 0, &exp()).unwrap();
    let saved: Vec<Alert> = before.to_save().cloned().collect();

    let mut st = AlertRuleState::new();
    st.restore(saved, 10 * M);
    // Right after the restart the expression returns nothing (rate() has
    // one sample): the saved alert waits instead of being deleted.
    st.eval(&rule.def(), 3 * M, &[], 0, &exp()).unwrap();
    assert_eq!(st.to_save().count(), 1);
    assert!(st.alerts().next().is_none());
    // Returned again: still active since 0, so it fires at 5 m, not 9 m.
    st.eval(&rule.def(), 4 * M, &hit, 0, &exp()).unwrap();
    assert_eq!(st.alerts().next().unwrap().active_at, 0);
    st.eval(&rule.def(), 5 * M, &hit, 0, &exp()).unwrap();
    assert_eq!(states(&st), vec![AlertState::Firing]);
}

#[test]
fn a_restored_firing_alert_never_returned_is_resolved_after_the_grace() {
    let rule = Rule::new(0);
    let hit = [sample(&[("job", "a")], 1.0)];
    let mut before = AlertRuleState::new();
    before.eval(&rule.def(), 0, &hit, 0, &exp()).unwrap();
    assert_eq!(states(&before), vec![AlertState::Firing]);
    let saved: Vec<Alert> = before.to_save().cloned().collect();

    let mut st = AlertRuleState::new();
    st.restore(saved, 2 * M);
    st.eval(&rule.def(), M, &[], 0, &exp()).unwrap();
    assert!(st.alerts().next().is_none(), "waiting within the grace");
    st.eval(&rule.def(), 3 * M, &[], 0, &exp()).unwrap();
    let a = st
        .alerts()
        .next()
        .expect("resolved, so the resolution is sent");
    assert_eq!(
        (a.state, a.resolved_at),
        (AlertState::Inactive, Some(3 * M))
    );
    assert!(a.needs_sending(3 * M, M));
}
