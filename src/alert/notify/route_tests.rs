use super::*;
use crate::alert::state::{Alert, AlertState};

/// 2025-01-31T08:00:00Z.
const T0: i64 = 1_738_310_400_000;
const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

fn firing(labels: &[(&str, &str)], at: i64) -> NotifyAlert {
    NotifyAlert {
        alert: Alert {
            state: AlertState::Firing,
            labels: Labels::from_pairs(labels.iter().copied()),
            annotations: vec![("summary".into(), "摘要".into())],
            value: 1.0,
            active_at: at,
            fired_at: Some(at),
            resolved_at: None,
            last_sent_at: Some(at),
            valid_until: None,
            keep_firing_since: None,
        },
        generator_url: "http://weir/graph".into(),
    }
}

fn resolved(mut a: NotifyAlert, at: i64) -> NotifyAlert {
    a.alert.state = AlertState::Inactive;
    a.alert.resolved_at = Some(at);
    a
}

fn a1() -> NotifyAlert {
    firing(&[("alertname", "HighLoad"), ("instance", "a")], T0)
}

fn a2() -> NotifyAlert {
    firing(&[("alertname", "HighLoad"), ("instance", "b")], T0)
}

fn route(name: &str, cfg: RouteConfig) -> Route {
    cfg.compile(name).unwrap()
}

fn one(cfg: RouteConfig) -> Dispatcher {
    Dispatcher::new(vec![route("team", cfg)], "http://weir")
}

/// Flushes at `now` and delivers everything due; returns it.
fn deliver(d: &mut Dispatcher, now: i64) -> Vec<Pending> {
    let due = d.due(now);
    for p in &due {
        d.delivered(p.route, &p.key, &p.notification, now);
    }
    due
}

fn instances(n: &Notification) -> Vec<(String, &'static str)> {
    n.alerts
        .iter()
        .map(|a| {
            let s = if a.is_resolved() {
                "resolved"
            } else {
                "firing"
            };
            (a.alert.labels.get("instance").to_string(), s)
        })
        .collect()
}

#[test]
fn defaults() {
    let c: RouteConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, RouteConfig::default());
    let r = route("x", c);
    assert_eq!(r.group_by, GroupBy::Labels(vec!["alertname".into()]));
    assert_eq!(
        (r.group_wait_ms, r.group_interval_ms, r.repeat_interval_ms),
        (30 * S, 5 * M, 4 * H)
    );
    assert!(r.send_resolved);
    let c: RouteConfig =
        serde_json::from_str(r#"{"group_wait": "10s", "group_by": [], "send_resolved": false}"#)
            .unwrap();
    assert_eq!(c.group_wait.0, Duration::from_secs(10));
    assert!(serde_json::from_str::<RouteConfig>(r#"{"group_wiat": "10s"}"#).is_err());
}

#[test]
fn first_notification_after_group_wait() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    assert_eq!(d.next_due_ms(), Some(T0 + 30 * S));
    assert!(d.due(T0 + 29 * S).is_empty());
    let p = deliver(&mut d, T0 + 30 * S);
    assert_eq!(p.len(), 1);
    let n = &p[0].notification;
    assert_eq!(p[0].key, r#"{}:{alertname="HighLoad"}"#);
    assert_eq!(n.receiver, "team");
    assert_eq!(n.external_url, "http://weir");
    assert_eq!(n.group_labels.get("alertname"), "HighLoad");
    assert_eq!(instances(n), vec![("a".into(), "firing")]);
    assert_eq!(d.next_due_ms(), Some(T0 + 30 * S + 5 * M));
}

#[test]
fn second_alert_batched_at_group_interval() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    // A second alert within group_wait goes out in the first notification.
    d.ingest(&[a2()], T0 + 10 * S);
    let p = deliver(&mut d, T0 + 30 * S);
    assert_eq!(instances(&p[0].notification).len(), 2);

    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    deliver(&mut d, T0 + 30 * S);
    let b = firing(&[("alertname", "HighLoad"), ("instance", "b")], T0 + M);
    d.ingest(&[a1(), b], T0 + M);
    // Not before the group's interval.
    assert!(d.due(T0 + 2 * M).is_empty());
    assert_eq!(d.next_due_ms(), Some(T0 + 30 * S + 5 * M));
    let p = deliver(&mut d, T0 + 30 * S + 5 * M);
    assert_eq!(
        instances(&p[0].notification),
        vec![("a".into(), "firing"), ("b".into(), "firing")]
    );
}

#[test]
fn repeat_interval() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    let first = T0 + 30 * S;
    deliver(&mut d, first);
    // Every group_interval a flush, but nothing new: no resend.
    let mut t = first;
    while t + 5 * M < first + 4 * H {
        t += 5 * M;
        d.ingest(&[a1()], t);
        assert!(d.due(t).is_empty(), "resent at {}", (t - first) / M);
    }
    t += 5 * M;
    assert!(t >= first + 4 * H);
    let p = deliver(&mut d, t);
    assert_eq!(instances(&p[0].notification), vec![("a".into(), "firing")]);
    assert!(d.due(t + 5 * M).is_empty());
}

#[test]
fn resolved_sent_once_then_group_gone() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1(), a2()], T0);
    deliver(&mut d, T0 + 30 * S);
    d.ingest(&[resolved(a1(), T0 + M)], T0 + M);
    let t1 = T0 + 30 * S + 5 * M;
    let p = deliver(&mut d, t1);
    assert_eq!(
        instances(&p[0].notification),
        vec![("a".into(), "resolved"), ("b".into(), "firing")]
    );
    // The rule keeps re-sending the resolved alert: not told again.
    d.ingest(&[resolved(a1(), T0 + M), a2()], t1 + M);
    assert!(d.due(t1 + 5 * M).is_empty());
    // All resolved: one notification, then the group is deleted.
    d.ingest(&[resolved(a2(), t1 + 6 * M)], t1 + 6 * M);
    let p = deliver(&mut d, t1 + 10 * M);
    assert_eq!(p[0].notification.status(), "resolved");
    assert_eq!(
        instances(&p[0].notification),
        vec![("b".into(), "resolved")]
    );
    assert_eq!(d.next_due_ms(), None);
    d.ingest(&[resolved(a2(), t1 + 6 * M)], t1 + 11 * M);
    assert_eq!(d.next_due_ms(), None);
    assert!(d.due(t1 + 20 * M).is_empty());
}

#[test]
fn resolved_before_first_notification_is_dropped() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1(), a2()], T0);
    d.ingest(&[resolved(a1(), T0 + 10 * S)], T0 + 10 * S);
    let p = deliver(&mut d, T0 + 30 * S);
    assert_eq!(instances(&p[0].notification), vec![("b".into(), "firing")]);
    // Fired and resolved within group_wait: nothing at all.
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    d.ingest(&[resolved(a1(), T0 + 10 * S)], T0 + 10 * S);
    assert!(d.due(T0 + 30 * S).is_empty());
    assert_eq!(d.next_due_ms(), None);
    // A resolved alert never notified does not make a group.
    d.ingest(&[resolved(a1(), T0 - H)], T0 + M);
    assert_eq!(d.next_due_ms(), None);
}

#[test]
fn send_resolved_false() {
    let mut d = one(RouteConfig {
        send_resolved: false,
        ..RouteConfig::default()
    });
    d.ingest(&[a1(), a2()], T0);
    deliver(&mut d, T0 + 30 * S);
    d.ingest(&[resolved(a1(), T0 + M)], T0 + M);
    assert!(d.due(T0 + 30 * S + 5 * M).is_empty());
    d.ingest(&[resolved(a2(), T0 + 6 * M)], T0 + 6 * M);
    assert!(d.due(T0 + 30 * S + 10 * M).is_empty());
    assert_eq!(d.next_due_ms(), None);
    // Firing again is a first notification.
    d.ingest(&[a1()], T0 + H);
    let p = deliver(&mut d, T0 + H + 30 * S);
    assert_eq!(instances(&p[0].notification), vec![("a".into(), "firing")]);

    // Resolved alerts are left out of a notification that goes anyway.
    let mut d = one(RouteConfig {
        send_resolved: false,
        ..RouteConfig::default()
    });
    d.ingest(&[a1()], T0);
    deliver(&mut d, T0 + 30 * S);
    d.ingest(&[resolved(a1(), T0 + M), a2()], T0 + M);
    let p = deliver(&mut d, T0 + 30 * S + 5 * M);
    assert_eq!(instances(&p[0].notification), vec![("b".into(), "firing")]);
}

#[test]
fn failed_delivery_is_retried() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    assert_eq!(d.due(T0 + 30 * S).len(), 1);
    // Not delivered: the next flush sends again.
    let p = deliver(&mut d, T0 + 30 * S + 5 * M);
    assert_eq!(p.len(), 1);
    assert!(d.due(T0 + 30 * S + 10 * M).is_empty());
    // A failed resolution is retried too, the alert kept until delivered.
    d.ingest(&[resolved(a1(), T0 + 11 * M)], T0 + 11 * M);
    let t = T0 + 30 * S + 15 * M;
    assert_eq!(d.due(t).len(), 1);
    let p = deliver(&mut d, t + 5 * M);
    assert_eq!(
        instances(&p[0].notification),
        vec![("a".into(), "resolved")]
    );
    assert_eq!(d.next_due_ms(), None);
}

#[test]
fn expired_alert_counts_as_resolved() {
    let mut d = one(RouteConfig::default());
    let mut a = a1();
    a.alert.valid_until = Some(T0 + 4 * M);
    d.ingest(&[a], T0);
    deliver(&mut d, T0 + 30 * S);
    let p = deliver(&mut d, T0 + 30 * S + 5 * M);
    let n = &p[0].notification;
    assert_eq!(instances(n), vec![("a".into(), "resolved")]);
    assert_eq!(n.alerts[0].alert.resolved_at, Some(T0 + 4 * M));
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

#[test]
fn matchers() {
    let ls = labels(&[("alertname", "HighLoad"), ("severity", "critical")]);
    let yes = [
        r#"severity="critical""#,
        "severity=critical",
        " severity = critical ",
        r#"alertname=~"High.*""#,
        "alertname=~High.*",
        "team!=db",
        "team=",
        r#"team="""#,
        r#"severity!~"warning|info""#,
        "severity=~crit.*|warning",
    ];
    for m in yes {
        assert!(Matcher::parse(m).unwrap().matches(&ls), "{m}");
    }
    let no = [
        "severity=warning",
        "severity!=critical",
        // Anchored: a partial match is no match.
        "alertname=~High",
        "alertname=~Load",
        r#"severity!~"crit.*""#,
        "team=~.+",
    ];
    for m in no {
        assert!(!Matcher::parse(m).unwrap().matches(&ls), "{m}");
    }
    let m = Matcher::parse(r#"msg="a \"b\" \\ c\nd""#).unwrap();
    assert_eq!(m.value, "a \"b\" \\ c\nd");
    assert_eq!(m.op, MatchOp::Eq);
    assert_eq!(Matcher::parse("x!~a|b").unwrap().op, MatchOp::NotRe);
    assert_eq!(Matcher::parse("x=~a").unwrap().to_string(), r#"x=~"a""#);
}

#[test]
fn bad_matchers() {
    assert_eq!(
        Matcher::parse("severity").unwrap_err(),
        "bad matcher format: severity"
    );
    assert!(Matcher::parse("=x").is_err());
    assert!(Matcher::parse("1a=x").is_err());
    assert!(
        Matcher::parse("a==x")
            .unwrap()
            .matches(&labels(&[("a", "=x")]))
    );
    assert_eq!(
        Matcher::parse(r#"a="x"y""#).unwrap_err(),
        r#"matcher value contains unescaped double quote: "x"y""#
    );
    assert!(Matcher::parse(r#"a="x"#).is_err());
    let cfg = RouteConfig {
        matchers: vec!["severity=critical".into(), "alertname=~\"(High\"".into()],
        ..RouteConfig::default()
    };
    let e = cfg.check().unwrap_err();
    assert!(
        e.starts_with(r#"matcher "alertname=~\"(High\"": invalid regex"#),
        "{e}"
    );
    let cfg = RouteConfig {
        matchers: vec!["team".into()],
        ..RouteConfig::default()
    };
    assert_eq!(
        cfg.check().unwrap_err(),
        r#"matcher "team": bad matcher format: team"#
    );
    let bad_group = RouteConfig {
        group_by: vec!["...".into(), "job".into()],
        ..RouteConfig::default()
    };
    assert!(bad_group.check().unwrap_err().contains("group_by"));
    let bad_name = RouteConfig {
        group_by: vec!["a-b".into()],
        ..RouteConfig::default()
    };
    assert!(bad_name.check().unwrap_err().contains("\"a-b\""));
    let zero = RouteConfig {
        group_interval: Dur(Duration::ZERO),
        ..RouteConfig::default()
    };
    assert!(zero.check().is_err());
}

#[test]
fn group_by_all_and_none() {
    let b = firing(&[("alertname", "DiskFull"), ("instance", "a")], T0);
    let mut d = one(RouteConfig {
        group_by: vec!["...".into()],
        ..RouteConfig::default()
    });
    d.ingest(&[a1(), a2(), b.clone()], T0);
    let p = d.due(T0 + 30 * S);
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|p| p.notification.alerts.len() == 1));
    assert!(
        p.iter()
            .any(|p| p.key == r#"{}:{alertname="DiskFull", instance="a"}"#)
    );

    let mut d = one(RouteConfig {
        group_by: vec![],
        ..RouteConfig::default()
    });
    d.ingest(&[a1(), a2(), b], T0);
    let p = d.due(T0 + 30 * S);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "{}:{}");
    assert_eq!(p[0].notification.alerts.len(), 3);
    assert!(p[0].notification.group_labels.is_empty());

    // A group_by label an alert lacks is left out of its group labels.
    let mut d = one(RouteConfig {
        group_by: vec!["alertname".into(), "cluster".into()],
        ..RouteConfig::default()
    });
    d.ingest(&[a1()], T0);
    assert_eq!(d.due(T0 + 30 * S)[0].key, r#"{}:{alertname="HighLoad"}"#);
}

#[test]
fn snapshot_restore_prevents_repage() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    let first = T0 + 30 * S;
    deliver(&mut d, first);
    let state = d.snapshot();
    assert_eq!(state.groups.len(), 1);
    assert_eq!(state.groups[0].route, "team");
    let json = serde_json::to_string(&state).unwrap();
    let state: DispatchState = serde_json::from_str(&json).unwrap();

    // Restart an hour later with the routes in another order.
    let routes = vec![
        route("other", RouteConfig::default()),
        route("team", RouteConfig::default()),
    ];
    let mut d = Dispatcher::new(routes, "http://weir");
    d.restore(state.clone());
    let t = first + H + 2 * M;
    d.ingest(&[a1()], t);
    let p = d.due(t + 30 * S);
    // Only the new route notifies (the group_wait of a fresh group).
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].route, 0);
    // The restored group flushes at its group_interval boundary, quietly.
    let boundary = first + 13 * 5 * M;
    assert!(d.due(boundary - 1).iter().all(|p| p.route == 0));
    assert!(d.due(boundary).is_empty());
    // Until repeat_interval has passed since the real last notification.
    let mut resent = None;
    for k in 14..60 {
        let t = first + k * 5 * M;
        d.ingest(&[a1()], t);
        if d.due(t).iter().any(|p| p.route == 1) {
            resent = Some(t);
            break;
        }
    }
    assert_eq!(resent, Some(first + 4 * H));

    // Restored, then resolved: the resolution is told.
    let mut d = one(RouteConfig::default());
    d.restore(state);
    d.ingest(&[resolved(a1(), first + H)], first + H);
    let p = d.due(first + H + 5 * M);
    assert_eq!(
        instances(&p[0].notification),
        vec![("a".into(), "resolved")]
    );
}

#[test]
fn restored_record_expires_unclaimed() {
    let mut d = one(RouteConfig::default());
    d.ingest(&[a1()], T0);
    deliver(&mut d, T0 + 30 * S);
    let state = d.snapshot();
    let mut d = one(RouteConfig::default());
    d.restore(state.clone());
    assert_eq!(d.snapshot(), state);
    d.due(T0 + 5 * H);
    assert!(d.snapshot().groups.is_empty());
}

#[test]
fn two_routes_with_different_matchers() {
    let critical = RouteConfig {
        matchers: vec![r#"severity="critical""#.into()],
        group_wait: Dur(Duration::from_secs(10)),
        ..RouteConfig::default()
    };
    let not_db = RouteConfig {
        matchers: vec!["team!=db".into()],
        ..RouteConfig::default()
    };
    let mut d = Dispatcher::new(
        vec![route("pager", critical), route("chat", not_db)],
        "http://weir",
    );
    let crit_db = firing(
        &[
            ("alertname", "Down"),
            ("severity", "critical"),
            ("team", "db"),
        ],
        T0,
    );
    let warn_web = firing(
        &[
            ("alertname", "Slow"),
            ("severity", "warning"),
            ("team", "web"),
        ],
        T0,
    );
    let crit_web = firing(
        &[
            ("alertname", "Down"),
            ("severity", "critical"),
            ("team", "web"),
        ],
        T0,
    );
    d.ingest(&[crit_db, warn_web, crit_web], T0);
    assert_eq!(d.next_due_ms(), Some(T0 + 10 * S));
    let p = d.due(T0 + 10 * S);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].notification.receiver, "pager");
    let teams = |n: &Notification| -> Vec<String> {
        n.alerts
            .iter()
            .map(|a| a.alert.labels.get("team").to_string())
            .collect()
    };
    assert_eq!(teams(&p[0].notification), vec!["db", "web"]);
    let mut p = d.due(T0 + 30 * S);
    p.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.route == 1));
    assert_eq!(teams(&p[0].notification), vec!["web"]);
    assert_eq!(p[0].key, r#"{}:{alertname="Down"}"#);
    assert_eq!(teams(&p[1].notification), vec!["web"]);
}
