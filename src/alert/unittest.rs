//! `weir test`: promtool's rule unit tests (`promtool test rules`, as
//! Prometheus 2.42's `cmd/promtool/unittest.go` runs them).
//!
//! A test file names rule files (relative to itself, globs allowed), an
//! `evaluation_interval` (default 1 m), an optional `group_eval_order`
//! and test groups. Each test group loads its `input_series` (expanding
//! notation, one value every `interval`; promtool's default interval is 0,
//! which puts every value at time 0 and keeps the first), then evaluates
//! every rule group at every step `0, interval, …` up to the group's
//! latest `eval_time`, in `group_eval_order` (file order otherwise; promtool's
//! order of groups not listed is random, weir's is file order). At the
//! step `ts` with `ts <= eval_time < ts + evaluation_interval` the firing
//! alerts of each `alert_rule_test` are compared, as sets of (labels,
//! annotations), with the expected ones (`alertname` added). After the
//! last step each `promql_expr_test` is evaluated at its `eval_time` over
//! the input series and everything the rules recorded.
//!
//! As promtool, samples become visible lazily: at step `ts` only those at
//! or before `ts`, and the expression tests only see samples up to the
//! last step. Rule results are kept for the whole test (no retention).
//!
//! Output follows promtool byte for byte where weir can know it:
//! `Unit Testing:  FILE`, `  SUCCESS` or `  FAILED:` and the failures,
//! with labels, alert lists and numbers as Go prints them
//! ([`report`]). Deliberately not matched: the text of YAML errors of a
//! test file (serde's, not `yaml.v2`'s) and of PromQL parse errors
//! (`promql-parser`'s), and the `query` template function, which fails in
//! `weir test` (its result would need the storage of the step being
//! evaluated). Subqueries without a step use `evaluation_interval`, in
//! expression tests and inside rules alike, as promtool does. Rule load errors are
//! worded as `weir validate` words them, not as promtool's `LoadGroups`.

pub(crate) mod input;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::group::{GroupEval, Layered, RuleResults};
use super::promql::storage::{parse_series_labels, parse_values};
use super::promql::{Engine, Labels, MemStorage, Series, Storage, Value, parse};
use super::rules::{self, RuleKind, parse_duration};
use super::state::{AlertState, Expander};
use super::template;
use input::{Map, TestFile, TestGroup, clean_join, glob, os_error};
use report::{AlertSet, Pairs, go_duration, model_duration, samples_string};

pub use report::indent_lines;

/// file passed.
pub fn run_files(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
    let mut ok = true;
    for f in files {
        writeln!(out, "Unit Testing:  {}", f.display())?;
        out.flush()?;
        let errs = test_file(f, err)?;
        if errs.is_empty() {
            writeln!(out, "  SUCCESS")?;
        } else {
            ok = false;
            writeln!(err, "  FAILED:")?;
            for e in &errs {
                writeln!(err, "{e}")?;
                err.flush()?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        writeln!(out)?;
    }
    Ok(ok)
}

fn duration(s: &Option<String>) -> Result<i64, String> {
    s.as_deref().map_or(Ok(0), parse_duration)
}

/// Runs one test file; the failures, empty when it passed. Warnings
/// (a rule file pattern matching nothing) go to `warn` at once.
pub fn test_file(path: &Path, warn: &mut dyn Write) -> io::Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Ok(vec![format!("open {}: {}", path.display(), os_error(&e))]),
    };
    let file: TestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => return Ok(vec![format!("yaml: {e}")]),
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut rule_files = Vec::new();
    for rf in file.rule_files.unwrap_or_default() {
        let full = if rf.is_empty() || rf.starts_with('/') {
            rf.clone()
        } else {
            clean_join(&base.to_string_lossy(), &rf)
        };
        let matched = glob(&full);
        if matched.is_empty() {
            writeln!(warn, "  WARNING: no file match pattern {full}")?;
        }
        rule_files.extend(matched);
    }
    let eval_interval = match duration(&file.evaluation_interval) {
        Ok(0) => 60_000,
        Ok(d) => d,
        Err(e) => return Ok(vec![format!("yaml: {e}")]),
    };
    let mut order: BTreeMap<String, usize> = BTreeMap::new();
    for (i, g) in file
        .group_eval_order
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if order.contains_key(&g) {
            return Ok(vec![format!(
                "group name repeated in evaluation order: {g}"
            )]);
        }
        order.insert(g, i);
    }
    let mut errs = Vec::new();
    for tg in file.tests.unwrap_or_default() {
        errs.extend(run_group(&tg, eval_interval, &order, &rule_files));
    }
    Ok(errs)
}

/// A store whose samples after `till` are not visible yet (promtool's lazy
/// loading of input series).
struct Till<'a> {
    inner: &'a MemStorage,
    till: i64,
}

impl Storage for Till<'_> {
    fn select(
        &self,
        matchers: &[promql_parser::label::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Series> {
        if start_ms > self.till {
            return Vec::new();
        }
        self.inner.select(matchers, start_ms, end_ms.min(self.till))
    }
}

/// Loads `input_series`: value `i` at `i · interval`; with interval 0
/// every value is at time 0 and the first one stays.
fn load_series(tg: &TestGroup, interval: i64) -> Result<MemStorage, String> {
    let mut store = MemStorage::new();
    for s in tg.input_series.iter().flatten() {
        let series = s.series.clone().unwrap_or_default().0;
        let values = s.values.clone().unwrap_or_default().0;
        let labels = parse_series_labels(&series).map_err(|e| format!("load: {e}"))?;
        let parsed = parse_values(&values).map_err(|e| format!("load: {series}: {e}"))?;
        for (i, v) in parsed.into_iter().enumerate() {
            let Some(v) = v else { continue };
            store.append(labels.clone(), i as i64 * interval, v);
            if interval == 0 {
                break;
            }
        }
    }
    Ok(store)
}

fn pairs(m: &Map) -> Pairs {
    m.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Runs one test group; its failures.
fn run_group(
    tg: &TestGroup,
    eval_interval: i64,
    order: &BTreeMap<String, usize>,
    rule_files: &[String],
) -> Vec<String> {
    let interval = match duration(&tg.interval) {
        Ok(d) => d,
        Err(e) => return vec![format!("yaml: {e}")],
    };
    let store = match load_series(tg, interval) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut groups = Vec::new();
    let mut load_errs = Vec::new();
    for f in rule_files {
        match rules::load(Path::new(f)) {
            Ok(file) => groups.extend(file.groups),
            Err(es) => load_errs.extend(es.iter().map(|e| e.to_string())),
        }
    }
    if !load_errs.is_empty() {
        return load_errs;
    }
    groups.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));
    let mut groups: Vec<GroupEval> = groups
        .into_iter()
        .map(|g| GroupEval::new(g).with_subquery_step_ms(eval_interval))
        .collect();

    let name = tg.name.clone().unwrap_or_default();
    let alert_tests = tg.alert_rule_test.as_deref().unwrap_or_default();
    let expr_tests = tg.promql_expr_test.as_deref().unwrap_or_default();
    let mut times: Vec<i64> = Vec::new();
    for a in alert_tests {
        let t = match duration(&a.eval_time) {
            Ok(t) => t,
            Err(e) => return vec![format!("yaml: {e}")],
        };
        if a.alertname.as_deref().unwrap_or("").is_empty() {
            let in_group = if name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {name})")
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(t)
            )];
        }
        times.push(t);
    }
    let mut expr_times = Vec::new();
    for e in expr_tests {
        match duration(&e.eval_time) {
            Ok(t) => expr_times.push(t),
            Err(e) => return vec![format!("yaml: {e}")],
        }
    }
    let maxt = times.iter().chain(&expr_times).copied().max().unwrap_or(0);
    let distinct: Vec<i64> = times
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let external = Labels::from_pairs(pairs(&tg.external_labels));
    let url = tg.external_url.clone().unwrap_or_default();
    let exp = Expander {
        render: &template::render_alert,
        external_labels: &external,
        external_url: &url,
    };
    let mut results = RuleResults::new(i64::MAX / 4);
    let mut errs = Vec::new();
    let mut curr = 0;
    let mut ts = 0i64;
    while ts <= maxt {
        let base = Till {
            inner: &store,
            till: ts,
        };
        let mut eval_errs = Vec::new();
        for g in groups.iter_mut() {
            for o in g.eval(ts, &base, &mut results, &exp) {
                if let Some(e) = o.error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        o.rule,
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < distinct.len() && ts <= distinct[curr] && distinct[curr] < ts + eval_interval {
            let t = distinct[curr];
            for (a, _) in alert_tests.iter().zip(&times).filter(|(_, at)| **at == t) {
                let alertname = a.alertname.clone().unwrap_or_default();
                let mut got = firing(&groups, &alertname);
                let mut want: AlertSet = a
                    .exp_alerts
                    .iter()
                    .flatten()
                    .map(|x| {
                        let mut l: BTreeMap<String, String> =
                            pairs(&x.exp_labels).into_iter().collect();
                        l.insert("alertname".into(), alertname.clone());
                        (l.into_iter().collect(), sorted(pairs(&x.exp_annotations)))
                    })
                    .collect();
                got.sort();
                want.sort();
                if got != want {
                    let test_name = if name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {name},\n")
                    };
                    errs.push(format!(
                        "{test_name}    alertname: {alertname}, time: {}, \n        exp:{}, \n        got:{}",
                        model_duration(t),
                        indent_lines(&report::alerts_string(&want), "            "),
                        indent_lines(&report::alerts_string(&got), "            "),
                    ));
                }
            }
            curr += 1;
        }
        ts += eval_interval;
    }

    let last_step = maxt / eval_interval * eval_interval;
    let base = Till {
        inner: &store,
        till: last_step,
    };
    for (e, &t) in expr_tests.iter().zip(&expr_times) {
        let text = e.expr.clone().unwrap_or_default();
        let layered = Layered {
            base: &base,
            top: &results,
        };
        let quoted = super::promql::format::go_quote(&text);
        let fail = |err: String| {
            format!(
                "    expr: {quoted}, time: {}, err: {err}",
                model_duration(t)
            )
        };
        let got = match query(&layered, &text, t, eval_interval) {
            Ok(g) => g,
            Err(err) => {
                errs.push(fail(err));
                continue;
            }
        };
        let mut want = Vec::new();
        let mut bad = None;
        for s in e.exp_samples.iter().flatten() {
            let l = s.labels.clone().unwrap_or_default();
            match parse_series_labels(&l) {
                Ok(labels) => want.push((labels, s.value.unwrap_or(0.0))),
                Err(err) => {
                    bad = Some(format!(
                        "labels {}: {err}",
                        super::promql::format::go_quote(&l)
                    ));
                    break;
                }
            }
        }
        if let Some(b) = bad {
            errs.push(fail(b));
            continue;
        }
        let mut got = got;
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let same =
            want.len() == got.len() && want.iter().zip(&got).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
        if !same {
            errs.push(format!(
                "    expr: {quoted}, time: {},\n        exp: {}\n        got: {}",
                model_duration(t),
                samples_string(&want),
                samples_string(&got)
            ));
        }
    }
    errs
}

fn sorted(mut p: Pairs) -> Pairs {
    p.sort();
    p
}

/// The firing alerts of every alerting rule named `alertname`, in all
/// groups.
fn firing(groups: &[GroupEval], alertname: &str) -> AlertSet {
    let mut out = Vec::new();
    for g in groups {
        for (i, r) in g.group().rules.iter().enumerate() {
            if !matches!(r.kind, RuleKind::Alerting(_)) || r.name != alertname {
                continue;
            }
            let Some(state) = g.alerts(i) else { continue };
            for a in state
                .active_alerts()
                .filter(|a| a.state == AlertState::Firing)
            {
                let labels: Pairs = a
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                out.push((labels, a.annotations.clone()));
            }
        }
    }
    out
}

/// An instant query as promtool's `query`: a vector, or a scalar as one
/// sample without labels.
fn query(
    storage: &dyn Storage,
    text: &str,
    t: i64,
    subquery_step: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    super::compat::check_2_42_syntax(text)?;
    let expr = parse(text)?;
    let engine = Engine::new(storage).with_subquery_step_ms(subquery_step);
    match engine.instant(&expr, t).map_err(|e| e.to_string())? {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::new(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}
