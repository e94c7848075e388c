//! Prometheus rule files: loading them unchanged and checking them as
//! `promtool check rules` 2.42 does.
//!
//! A rule file is `groups:` of `name`, `interval`, `limit` and `rules`;
//! each rule is an alerting rule (`alert`, `expr`, `for`, `keep_firing_for`,
//! `labels`, `annotations`) or a recording rule (`record`, `expr`,
//! `labels`). The YAML is read into weir's positioned [`Node`] tree and
//! walked by hand, so every problem is reported at once with
//! `file:line:col`, its group and its rule, as pipeline errors are.
//!
//! The checks are those of Prometheus 2.42's `rulefmt` (group names set
//! and unique, durations, `alert`/`record` exclusive, metric and label
//! names, templates, expressions) plus one of weir's own: an expression
//! that parses but that weir's engine cannot evaluate is refused here,
//! naming the rule, rather than being silently false later. promtool's
//! duplicate-rule lint is a warning, as it is by default in promtool.
//!
//! Deliberately not here: evaluation (see [`super::group`]), template
//! expansion (see [`super::template`]), and the 3.x additions to the
//! format (group `labels`, `query_offset`), which 2.42 refuses and so
//! does this.

use std::fmt;
use std::path::Path;

use promql_parser::parser::Expr;

use crate::alert::{compat, promql, template};
use crate::config::node::{Node, NodeKind, Pos, unknown_key_message};

/// The keys of a file, a group and a rule, as Prometheus 2.42 knows them.
const FILE_KEYS: &[&str] = &["groups"];
const GROUP_KEYS: &[&str] = &["name", "interval", "limit", "rules"];
const RULE_KEYS: &[&str] = &[
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// A loaded rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
    /// Problems promtool only lints about (duplicate rules).
    pub warnings: Vec<String>,
}

impl RuleFile {
    /// Number of rules in all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// A list of rules evaluated in order, at one interval.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    /// `None`: the global evaluation interval.
    pub interval_ms: Option<i64>,
    /// Most alerts or series one rule may produce; 0 is no limit.
    pub limit: usize,
    pub rules: Vec<Rule>,
    pub pos: Pos,
}

/// One alerting or recording rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert's name or the recorded metric's name.
    pub name: String,
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    pub expr: Expr,
    /// Sorted by name; alert label values are templates.
    pub labels: Vec<(String, String)>,
    pub pos: Pos,
}

/// What a rule does with its expression's result.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Alerting(AlertSpec),
    Recording,
}

/// The parts only an alerting rule has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertSpec {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    /// Sorted by name; values are templates.
    pub annotations: Vec<(String, String)>,
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: String,
    pub pos: Option<Pos>,
    /// `group "api"`, `group "api", rule "HighErrorRate"`, … when inside one.
    pub context: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{p}")?;
        }
        f.write_str(": ")?;
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Whether `text` looks like a rule file: a mapping with a `groups` key.
pub fn is_rule_file(text: &str) -> bool {
    Node::parse_document(text).is_ok_and(|(n, _)| n.get("groups").is_some())
}

/// Reads and checks a rule file.
pub fn load(path: &Path) -> Result<RuleFile, Vec<RuleError>> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: origin.clone(),
            pos: None,
            context: None,
            message: format!("cannot read the rule file: {e}"),
        }]
    })?;
    from_text(&text, &origin)
}

/// Checks rule file text; `origin` names it in messages. Every problem
/// found is returned, not just the first.
pub fn from_text(text: &str, origin: &str) -> Result<RuleFile, Vec<RuleError>> {
    let mut cx = Checker {
        file: origin.to_string(),
        errors: Vec::new(),
    };
    let (root, duplicates) = match Node::parse_document(text) {
        Ok(n) => n,
        Err((pos, message)) => {
            cx.error(pos, None, message);
            return Err(cx.errors);
        }
    };
    for d in duplicates {
        cx.error(d.pos, None, d.message);
    }
    let groups = cx.file(&root);
    if !cx.errors.is_empty() {
        // In the order they are written (stable for one position).
        cx.errors.sort_by_key(|e| e.pos.map(|p| (p.line, p.column)));
        return Err(cx.errors);
    }
    let warnings = duplicate_rules(&groups)
        .into_iter()
        .map(|(name, labels)| {
            let labels = promql::Labels::from_pairs(labels);
            format!(
                "{origin}: duplicate rule {name}{labels} (same name and labels); might cause inconsistency while recording expressions"
            )
        })
        .collect();
    Ok(RuleFile { groups, warnings })
}

/// Rules with the same name and labels (promtool's `duplicate-rules` lint).
fn duplicate_rules(groups: &[RuleGroup]) -> Vec<(String, Vec<(String, String)>)> {
    let mut all: Vec<(&str, &[(String, String)])> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| (r.name.as_str(), r.labels.as_slice()))
        .collect();
    all.sort();
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1]
            && out
                .last()
                .is_none_or(|(n, l)| (n.as_str(), l.as_slice()) != w[1])
        {
            out.push((w[1].0.to_string(), w[1].1.to_vec()));
        }
    }
    out
}

struct Checker {
    file: String,
    errors: Vec<RuleError>,
}

/// A rule's fields as read, before they are checked together.
#[derive(Default)]
struct RawRule<'a> {
    record: Option<(&'a Node, String)>,
    alert: Option<(&'a Node, String)>,
    expr: Option<(&'a Node, String)>,
    for_ms: i64,
    keep_firing_for_ms: i64,
    /// Name, value, and where the value was written.
    labels: Vec<(String, String, Pos)>,
    annotations: Vec<(String, String, Pos)>,
}

fn without_pos(pairs: Vec<(String, String, Pos)>) -> Vec<(String, String)> {
    pairs.into_iter().map(|(k, v, _)| (k, v)).collect()
}

impl Checker {
    fn error(&mut self, pos: Option<Pos>, context: Option<&str>, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.clone(),
            pos,
            context: context.map(str::to_string),
            message: message.into(),
        });
    }

    /// The entries of a mapping node (null is empty), or an error.
    fn entries<'n>(&mut self, node: &'n Node, what: &str, cx: Option<&str>) -> &'n [(Node, Node)] {
        match &node.kind {
            NodeKind::Map(m) => m,
            NodeKind::Null => &[],
            _ => {
                let msg = format!("{what} must be a mapping, not {}", node.describe());
                self.error(Some(node.pos), cx, msg);
                &[]
            }
        }
    }

    /// The items of a list node (null is empty), or an error.
    fn items<'n>(&mut self, node: &'n Node, what: &str, cx: Option<&str>) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(s) => s,
            NodeKind::Null => &[],
            _ => {
                let msg = format!("{what} must be a list, not {}", node.describe());
                self.error(Some(node.pos), cx, msg);
                &[]
            }
        }
    }

    /// A scalar as the string Go's YAML decoder would make of it.
    fn string(&mut self, node: &Node, what: &str, cx: Option<&str>) -> Option<String> {
        match &node.kind {
            NodeKind::Null => Some(String::new()),
            NodeKind::Str(_) | NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                Some(node.key_text())
            }
            _ => {
                let msg = format!("{what} must be a string, not {}", node.describe());
                self.error(Some(node.pos), cx, msg);
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str, cx: Option<&str>) -> Option<i64> {
        let text = self.string(node, what, cx)?;
        if matches!(node.kind, NodeKind::Null) {
            return Some(0);
        }
        match parse_duration(&text) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.error(Some(node.pos), cx, format!("{what}: {e}"));
                None
            }
        }
    }

    fn file(&mut self, root: &Node) -> Vec<RuleGroup> {
        let mut groups = Vec::new();
        for (k, v) in self.entries(root, "a rule file", None) {
            let key = k.key_text();
            if key != "groups" {
                self.error(Some(k.pos), None, unknown_key_message(&key, FILE_KEYS));
                continue;
            }
            for (i, g) in self.items(v, "`groups`", None).iter().enumerate() {
                if let Some(group) = self.group(g, i) {
                    if groups.iter().any(|o: &RuleGroup| o.name == group.name) {
                        let msg =
                            format!("groupname: {:?} is repeated in the same file", group.name);
                        self.error(Some(group.pos), None, msg);
                    }
                    groups.push(group);
                }
            }
        }
        groups
    }

    fn group(&mut self, node: &Node, index: usize) -> Option<RuleGroup> {
        let name = match node.get("name") {
            Some(n) => self.string(n, "`name`", None).unwrap_or_default(),
            None => String::new(),
        };
        let cx = if name.is_empty() {
            format!("group #{}", index + 1)
        } else {
            format!("group {name:?}")
        };
        let cx = Some(cx.as_str());
        let mut group = RuleGroup {
            name: name.clone(),
            interval_ms: None,
            limit: 0,
            rules: Vec::new(),
            pos: node.pos,
        };
        let entries = self.entries(node, "a group", cx);
        if !matches!(node.kind, NodeKind::Map(_)) {
            return None;
        }
        if name.is_empty() {
            self.error(Some(node.pos), cx, "Groupname must not be empty");
        }
        for (k, v) in entries {
            match k.key_text().as_str() {
                "name" => {}
                "interval" => {
                    let ms = self.duration(v, "`interval`", cx);
                    group.interval_ms = ms.filter(|ms| *ms > 0);
                }
                "limit" => match v.kind {
                    NodeKind::Int(l) => group.limit = usize::try_from(l).unwrap_or(0),
                    NodeKind::Null => {}
                    _ => {
                        let msg = format!("`limit` must be a whole number, not {}", v.describe());
                        self.error(Some(v.pos), cx, msg);
                    }
                },
                "rules" => {
                    for (i, r) in self.items(v, "`rules`", cx).iter().enumerate() {
                        if let Some(rule) = self.rule(r, i, &name, index) {
                            group.rules.push(rule);
                        }
                    }
                }
                other @ ("labels" | "query_offset") => {
                    let msg = format!(
                        "unknown key `{other}`: group `{other}` is Prometheus 3.x; 2.42 refuses it (valid keys: `name`, `interval`, `limit`, `rules`)"
                    );
                    self.error(Some(k.pos), cx, msg);
                }
                other => {
                    let msg = unknown_key_message(other, GROUP_KEYS);
                    self.error(Some(k.pos), cx, msg);
                }
            }
        }
        Some(group)
    }

    fn rule(&mut self, node: &Node, index: usize, group: &str, gi: usize) -> Option<Rule> {
        let group_cx = if group.is_empty() {
            format!("group #{}", gi + 1)
        } else {
            format!("group {group:?}")
        };
        let name_node = node.get("alert").or_else(|| node.get("record"));
        let name = name_node.map(Node::key_text).filter(|n| !n.is_empty());
        let cx = match &name {
            Some(n) => format!("{group_cx}, rule {n:?}"),
            None => format!("{group_cx}, rule #{}", index + 1),
        };
        let cx = Some(cx.as_str());
        let entries = self.entries(node, "a rule", cx);
        if !matches!(node.kind, NodeKind::Map(_)) {
            return None;
        }
        let before = self.errors.len();
        let mut raw = RawRule::default();
        for (k, v) in entries {
            let key = k.key_text();
            let what = format!("`{key}`");
            match key.as_str() {
                "record" | "alert" | "expr" => {
                    if let Some(s) = self.string(v, &what, cx) {
                        let slot = match key.as_str() {
                            "record" => &mut raw.record,
                            "alert" => &mut raw.alert,
                            _ => &mut raw.expr,
                        };
                        *slot = Some((v, s));
                    }
                }
                "for" => raw.for_ms = self.duration(v, &what, cx).unwrap_or(0),
                "keep_firing_for" => {
                    raw.keep_firing_for_ms = self.duration(v, &what, cx).unwrap_or(0)
                }
                "labels" | "annotations" => {
                    let pairs = self.string_map(v, &what, cx);
                    if key == "labels" {
                        raw.labels = pairs;
                    } else {
                        raw.annotations = pairs;
                    }
                }
                other => {
                    let msg = unknown_key_message(other, RULE_KEYS);
                    self.error(Some(k.pos), cx, msg);
                }
            }
        }
        let rule = self.check_rule(node, raw, cx);
        (self.errors.len() == before).then_some(rule).flatten()
    }

    /// A mapping of names to strings, sorted by name, checking each name
    /// is a valid label name.
    fn string_map(
        &mut self,
        node: &Node,
        what: &str,
        cx: Option<&str>,
    ) -> Vec<(String, String, Pos)> {
        let mut out = Vec::new();
        for (k, v) in self.entries(node, what, cx) {
            let Some(key) = self.string(k, &format!("a key of {what}"), cx) else {
                continue;
            };
            let Some(val) = self.string(v, &format!("{what} `{key}`"), cx) else {
                continue;
            };
            let invalid = !is_label_name(&key) || (what == "`labels`" && key == "__name__");
            if invalid {
                let kind = if what == "`labels`" {
                    "label"
                } else {
                    "annotation"
                };
                self.error(Some(k.pos), cx, format!("invalid {kind} name: {key}"));
            }
            out.push((key, val, v.pos));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn check_rule(&mut self, node: &Node, raw: RawRule, cx: Option<&str>) -> Option<Rule> {
        let record = raw.record.filter(|(_, s)| !s.is_empty());
        let alert = raw.alert.filter(|(_, s)| !s.is_empty());
        match (&record, &alert) {
            (Some((r, _)), Some(_)) => self.error(
                Some(r.pos),
                cx,
                "only one of 'record' and 'alert' must be set",
            ),
            (None, None) => {
                self.error(Some(node.pos), cx, "one of 'record' or 'alert' must be set")
            }
            _ => {}
        }
        let expr = match raw.expr.filter(|(_, s)| !s.trim().is_empty()) {
            None => {
                self.error(Some(node.pos), cx, "field 'expr' must be set in rule");
                None
            }
            Some((n, text)) => {
                let parsed = promql::parse(&text)
                    .map_err(|e| format!("could not parse expression: {}", e.trim()))
                    .and_then(|expr| {
                        compat::check_2_42_syntax(&text)
                            .map_err(|e| format!("could not parse expression: {e}"))?;
                        promql::engine::check_supported(&expr)
                            .map_err(|e| format!("weir cannot evaluate this expression: {e}"))?;
                        Ok(expr)
                    });
                match parsed {
                    Ok(expr) => Some((text, expr)),
                    Err(msg) => {
                        self.error(Some(n.pos), cx, msg);
                        None
                    }
                }
            }
        };
        if let Some((r, name)) = &record {
            let pos = Some(r.pos);
            if !raw.annotations.is_empty() {
                self.error(pos, cx, "invalid field 'annotations' in recording rule");
            }
            if raw.for_ms != 0 {
                self.error(pos, cx, "invalid field 'for' in recording rule");
            }
            if raw.keep_firing_for_ms != 0 {
                self.error(pos, cx, "invalid field 'keep_firing_for' in recording rule");
            }
            if !is_metric_name(name) {
                self.error(pos, cx, format!("invalid recording rule name: {name}"));
            }
        }
        if alert.is_some() {
            for (kind, pairs) in [("label", &raw.labels), ("annotation", &raw.annotations)] {
                for (k, v, pos) in pairs {
                    if let Err(e) = template::check(v) {
                        self.error(Some(*pos), cx, format!("{kind} {k:?}: {e}"));
                    }
                }
            }
        }
        let (expr_text, expr) = expr?;
        let (name, kind) = match (record, alert) {
            (Some((_, n)), None) => (n, RuleKind::Recording),
            (None, Some((_, n))) => {
                let spec = AlertSpec {
                    for_ms: raw.for_ms,
                    keep_firing_for_ms: raw.keep_firing_for_ms,
                    annotations: without_pos(raw.annotations),
                };
                (n, RuleKind::Alerting(spec))
            }
            _ => return None,
        };
        Some(Rule {
            name,
            kind,
            expr_text,
            expr,
            labels: without_pos(raw.labels),
            pos: node.pos,
        })
    }
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `0s`, `0`, units
/// `y w d h m s ms`, each at most once and in that order) into ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let invalid = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (num, tail) = rest.split_at(digits);
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(letters);
        let Some(i) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        let i = next_unit + i;
        let n: i64 = num
            .parse()
            .map_err(|_| "duration out of range".to_string())?;
        total = n
            .checked_mul(UNITS[i].1)
            .and_then(|v| v.checked_add(total))
            .filter(|v| v.checked_mul(1_000_000).is_some())
            .ok_or_else(|| "duration out of range".to_string())?;
        next_unit = i + 1;
        rest = tail;
    }
    Ok(total)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
