//! Alert label and annotation templates: Go `text/template` semantics
//! with Prometheus 2.42's functions and variables.
//!
//! A rule's `labels:` and `annotations:` values are Go templates. Like
//! Prometheus, [`Template::parse`] puts
//! `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`
//! in front of the text, so `{{ $labels.instance }}` and
//! `{{ $value | humanize }}` work, and positions in error messages count
//! from the start of that prefix, as Prometheus' do. Maps are looked up
//! with `missingkey=zero`, as Prometheus sets it: a missing label
//! (`$labels.nope`) renders as the empty string, a missing key of a
//! `map[string]interface{}` (`args`) as `<no value>`.
//!
//! This is weir's own implementation of the subset of `text/template`
//! that rule templates use (the `gotmpl` crate prints floats with Rust's
//! `{}`, so `{{ $value }}` would print `1000000` where Go prints `1e+06`):
//! actions, pipes, parenthesised pipelines, `if`/`else if`/`else`,
//! `range` (maps in key order, query results), `with`, `break`,
//! `continue`, variables (`:=`, `=`), fields, comments, trim markers, and
//! Go's builtins `and or not len index printf print println html urlquery
//! eq ne lt le gt ge`. Deliberately not supported: `define`, `template`,
//! `block` (refused at parse time), `js`, `call`, `slice` (parse, but fail
//! when executed), and `html/template` escaping (Prometheus uses
//! `text/template` for alerts). Of methods, only `time.Time`'s `Format`,
//! `Unix`, `UnixMilli`, `UTC`, `Local`, `IsZero`, `String` are known (so
//! `(toTime $v).Unix` works, as in Prometheus).
//!
//! [`Template::parse_message`] / [`Template::render_message`] run the
//! same engine over Alertmanager's notification data and functions
//! (`am`), for user message templates.
//!
//! Prometheus' functions: `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `humanizeTimestamp`, `toTime`, `title`,
//! `toUpper`, `toLower`, `match`, `reReplaceAll`, `safeHtml`,
//! `stripPort`, `stripDomain`, `parseDuration`, `args`, `graphLink`,
//! `tableLink`, `externalURL`, `pathPrefix`, and on query results `first`,
//! `label`, `value`, `strvalue`, `sortByLabel`. `query` runs only through
//! [`Template::render_with_query`]; [`Template::render`] makes it fail with
//! "query is not supported in weir templates yet".

mod am;
mod exec;
mod fmt;
mod funcs;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use exec::{State, Value};

pub use am::{MessageAlert, MessageData};

/// What Prometheus prepends to every alert template.
const PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Upper bound on `range` iterations in one rendering.
const RANGE_BUDGET: usize = 100_000;

/// The data an alert template sees (Prometheus' `AlertTemplateData`):
/// `.Labels` / `$labels`, `.ExternalLabels` / `$externalLabels`,
/// `.ExternalURL` / `$externalURL`, `.Value` / `$value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertData {
    /// The alert's labels (the sample's labels without `__name__`).
    pub labels: BTreeMap<String, String>,
    /// The configured external labels.
    pub external_labels: BTreeMap<String, String>,
    /// The configured external URL.
    pub external_url: String,
    /// The sample value that made the alert.
    pub value: f64,
}

/// One element of a `query` result, as templates see it
/// (`.Labels`, `.Value`, `label`, `value`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuerySample {
    /// The series' labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// A parsed template, ready to render many times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    text: String,
    list: parse::List,
    /// A message template (Alertmanager's data and functions).
    message: bool,
}

fn func_names() -> HashSet<&'static str> {
    funcs::GO_BUILTINS
        .iter()
        .chain(funcs::NAMES)
        .copied()
        .collect()
}

impl Template {
    /// Parses `text` with Prometheus' variable definitions in front.
    /// `name` names the template in errors; Prometheus uses
    /// `__alert_` + the alert name. Errors read like Go's:
    /// `template: __alert_X:1: function "foo" not defined`.
    pub fn parse(name: &str, text: &str) -> Result<Template, String> {
        let full = format!("{PREFIX}{text}");
        let list = parse::parse(name, &full, &func_names())?;
        Ok(Template {
            name: name.to_string(),
            text: full,
            list,
            message: false,
        })
    }

    /// Parses a notification message template: no prefix, Alertmanager's
    /// functions instead of Prometheus' (see [`am`]). Errors read like
    /// Go's: `template: NAME:LINE: function "foo" not defined`.
    pub fn parse_message(name: &str, text: &str) -> Result<Template, String> {
        let names: HashSet<&str> = funcs::GO_BUILTINS
            .iter()
            .chain(am::NAMES)
            .copied()
            .collect();
        let list = parse::parse(name, text, &names)?;
        Ok(Template {
            name: name.to_string(),
            text: text.to_string(),
            list,
            message: true,
        })
    }

    /// Renders a template from [`Template::parse_message`] over `data`.
    pub fn render_message(&self, data: &MessageData) -> Result<String, String> {
        self.run_root(am::root(data), None)
    }

    /// Renders the template over `data`. `query` fails (see the module
    /// doc). The error is what Prometheus' `Expand` returns, e.g.
    /// `error executing template __alert_X: template: __alert_X:1:116:
    /// executing "__alert_X" at <humanize "a">: error calling humanize: …`;
    /// Prometheus shows it as `<error expanding template: ERROR>` (see
    /// [`Template::expand`]).
    pub fn render(&self, data: &AlertData) -> Result<String, String> {
        self.run(data, None)
    }

    /// [`Template::render`] with a `query` function: it gets the PromQL
    /// text and returns the instant vector at the evaluation time.
    pub fn render_with_query(
        &self,
        data: &AlertData,
        query: &dyn Fn(&str) -> Result<Vec<QuerySample>, String>,
    ) -> Result<String, String> {
        self.run(data, Some(query))
    }

    /// What Prometheus puts in the label or annotation: the rendering, or
    /// `<error expanding template: ERROR>` when it fails.
    pub fn expand(&self, data: &AlertData) -> String {
        self.render(data)
            .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }

    fn run(&self, data: &AlertData, query: exec::QueryCallback<'_>) -> Result<String, String> {
        let root = Value::Data(Rc::new(vec![
            ("Labels", Value::string_map(&data.labels)),
            ("ExternalLabels", Value::string_map(&data.external_labels)),
            ("ExternalURL", Value::str(&data.external_url)),
            ("Value", Value::Float(data.value)),
        ]));
        self.run_root(root, query)
    }

    fn run_root(&self, root: Value, query: exec::QueryCallback<'_>) -> Result<String, String> {
        let mut st = State {
            vars: vec![("$".to_string(), root.clone())],
            out: String::new(),
            query,
            budget: RANGE_BUDGET,
            message: self.message,
        };
        match st.walk(&self.list, &root) {
            Ok(_) => Ok(st.out),
            Err(e) => {
                let n = &self.name;
                let loc = match &e.at {
                    Some((pos, cmd)) => {
                        let (line, col) = self.line_col(*pos);
                        format!(
                            "template: {n}:{line}:{col}: executing {} at <{cmd}>: ",
                            quote(n)
                        )
                    }
                    None => format!("template: {n}: executing {}: ", quote(n)),
                };
                Err(format!("error executing template {n}: {loc}{}", e.msg))
            }
        }
    }

    /// Go's `ErrorContext` position: line, and byte offset in the line
    /// (on the first line the offset from the start, as Go counts it).
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let before = &self.text[..pos.min(self.text.len())];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            None => pos,
            Some(nl) => pos - (nl + 1),
        };
        (line, col)
    }
}

/// Renders an alert's label or annotation template as Prometheus does,
/// naming it `__alert_NAME` (the [`crate::alert::state::Renderer`] of the
/// evaluators).
pub fn render_alert(text: &str, data: &crate::alert::state::AlertData) -> Result<String, String> {
    let name = format!("__alert_{}", data.alertname);
    let t =
        Template::parse(&name, text).map_err(|e| format!("error parsing template {name}: {e}"))?;
    let map = |l: &crate::alert::promql::Labels| -> BTreeMap<String, String> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    t.render(&AlertData {
        labels: map(data.labels),
        external_labels: map(data.external_labels),
        external_url: data.external_url.to_string(),
        value: data.value,
    })
}

/// Checks that `text` parses as an alert template (for `weir validate`,
/// like promtool's template check); the error names the template `__alert_`.
pub fn check(text: &str) -> Result<(), String> {
    Template::parse("__alert_", text).map(|_| ())
}

/// Go's `%q` of a string.
fn quote(s: &str) -> String {
    crate::alert::promql::format::go_quote(s)
}
