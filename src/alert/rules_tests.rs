use super::*;

fn errors(yaml: &str) -> Vec<String> {
    match from_text(yaml, "r.yml") {
        Ok(f) => panic!("expected errors, loaded {} groups", f.groups.len()),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn fixture(name: &str) -> RuleFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines/rules")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn plan_and_app_rule_files_load_unchanged() {
    let plan = fixture("alerting_rules.yml");
    assert_eq!((plan.groups.len(), plan.rule_count()), (1, 6));
    let rate = &plan.groups[0].rules[1];
    assert_eq!(rate.name, "HighErrorRate");
    let RuleKind::Alerting(spec) = &rate.kind else {
        panic!("alerting rule");
    };
    assert_eq!(spec.for_ms, 60_000);
    assert_eq!(
        rate.labels,
        [("severity".to_string(), "critical".to_string())]
    );
    assert_eq!(spec.annotations[0].0, "description");
    assert!(plan.warnings.is_empty());
    let cost = &plan.groups[0].rules[5];
    assert!(matches!(&cost.kind, RuleKind::Alerting(s) if s.for_ms == 0));

    let app = fixture("app-alerting-rules.yml");
    assert_eq!(app.rule_count(), 30);
    assert!(app.warnings.is_empty(), "{:?}", app.warnings);
}

#[test]
fn every_problem_is_reported_with_position_group_and_rule() {
    let yaml = r#"groups:
- name: api
  interval: 1x
  rules:
  - alert: HighErrorRate
    expr: rate(x[5m] > 1
    for: 5minutes
    labels:
      __name__: nope
      "bad-name": x
    annotations:
      d: "{{ $value "
  - record: 'bad name'
    expr: sum(x)
    for: 1m
  - expr: up
  - alert: Unsupported
    expr: info(up)
    lables: {}
- name: api
  rulez: []
"#;
    let got = errors(yaml);
    let want = [
        r#"r.yml:3:13: group "api": `interval`: not a valid duration string: "1x""#,
        r#"r.yml:6:11: group "api", rule "HighErrorRate": could not parse expression:"#,
        r#"r.yml:7:10: group "api", rule "HighErrorRate": `for`: not a valid duration string: "5minutes""#,
        r#"r.yml:9:7: group "api", rule "HighErrorRate": invalid label name: __name__"#,
        r#"r.yml:10:7: group "api", rule "HighErrorRate": invalid label name: bad-name"#,
        r#"r.yml:12:10: group "api", rule "HighErrorRate": annotation "d": template:"#,
        r#"r.yml:13:13: group "api", rule "bad name": invalid field 'for' in recording rule"#,
        r#"r.yml:13:13: group "api", rule "bad name": invalid recording rule name: bad name"#,
        r#"r.yml:16:5: group "api", rule #3: one of 'record' or 'alert' must be set"#,
        r#"r.yml:18:11: group "api", rule "Unsupported": weir cannot evaluate this expression: unsupported:"#,
        r#"r.yml:19:5: group "api", rule "Unsupported": unknown key `lables`: did you mean `labels`?"#,
        r#"r.yml:20:3: groupname: "api" is repeated in the same file"#,
        r#"r.yml:21:3: group "api": unknown key `rulez`: did you mean `rules`?"#,
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "got  {g}\nwant {w}…");
    }
}

#[test]
fn file_level_and_shape_problems() {
    let got = errors("groups:\n- name: ''\n  rules: {}\ngroup: []\n");
    assert!(
        got[0].starts_with("r.yml:2:3: group #1: Groupname must not be empty"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("r.yml:3:10: group #1: `rules` must be a list"),
        "{got:?}"
    );
    assert!(
        got[2].starts_with("r.yml:4:1: unknown key `group`: did you mean `groups`?"),
        "{got:?}"
    );
    let got = errors("groups:\n- name: g\n  rules:\n  - alert: A\n    record: b\n    expr: up\n");
    assert_eq!(
        got,
        [r#"r.yml:5:13: group "g", rule "A": only one of 'record' and 'alert' must be set"#]
    );
    let got =
        errors("groups:\n- name: g\n  labels: {a: b}\n  rules:\n  - alert: A\n    expr: ''\n");
    assert!(got[0].contains("unknown key `labels`"), "{got:?}");
    assert!(
        got[1].contains("field 'expr' must be set in rule"),
        "{got:?}"
    );
    assert!(errors("groups: [\n")[0].starts_with("r.yml:"));
    let dup = errors("groups:\n- name: g\n  name: h\n");
    assert!(dup[0].contains("duplicate key `name`"), "{dup:?}");
}

#[test]
fn empty_and_minimal_files() {
    let f = from_text("groups: []\n", "r.yml").unwrap();
    assert_eq!(f.groups.len(), 0);
    let f = from_text("groups:\n- name: g\n  interval: 30s\n  limit: 3\n", "r.yml").unwrap();
    assert_eq!(
        (f.groups[0].interval_ms, f.groups[0].limit),
        (Some(30_000), 3)
    );
    assert!(is_rule_file("groups: []\n"));
    assert!(!is_rule_file("sources: {}\n"));
}

#[test]
fn duplicate_rules_are_a_warning() {
    let yaml = "groups:\n- name: a\n  rules:\n  - record: r\n    expr: up\n- name: b\n  rules:\n  - record: r\n    expr: up\n";
    let f = from_text(yaml, "r.yml").unwrap();
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
}

#[test]
fn prometheus_durations() {
    let ok = [
        ("0", 0),
        ("0s", 0),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
        ("1y", 31_536_000_000),
        ("1s500ms", 1_500),
        ("90m", 5_400_000),
    ];
    for (s, ms) in ok {
        assert_eq!(parse_duration(s), Ok(ms), "{s}");
    }
    for bad in [
        "",
        "1",
        "5 m",
        "1m1h",
        "1.5h",
        "-1m",
        "1h1h",
        "m",
        "1M",
        "300000000y",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn names() {
    assert!(is_metric_name("job:errors:rate5m"));
    assert!(!is_metric_name("1abc"));
    assert!(is_label_name("_a1"));
    assert!(!is_label_name("a:b"));
    assert!(!is_label_name(""));
}
