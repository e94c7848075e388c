//! Conditions on event fields, as written in pipelines:
//!
//! ```yaml
//! condition: {field: level, one_of: [ERROR, CRITICAL]}
//! condition:
//!   all:
//!     - {field: event, equals: api_request}
//!     - {field: status_code, gte: 500}
//!     - not: {field: path, matches: '^/health'}
//! ```
//!
//! Several tests on one field must all hold. Comparisons read the field as
//! text (`equals`, `one_of`, `matches`) or as a number (`gt`, `gte`, `lt`,
//! `lte`); a missing field fails every test except `exists: false`.
//! Only top-level fields are addressed.

use serde::Deserialize;

use crate::config::invalid::Invalid;
use crate::event::Event;

/// The YAML form; compiled into a [`Condition`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    pub field: Option<String>,
    pub equals: Option<serde_json::Value>,
    pub not_equals: Option<serde_json::Value>,
    pub one_of: Option<Vec<serde_json::Value>>,
    pub matches: Option<String>,
    pub exists: Option<bool>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    pub all: Option<Vec<ConditionConfig>>,
    pub any: Option<Vec<ConditionConfig>>,
    pub not: Option<Box<ConditionConfig>>,
}

#[derive(Debug, Clone)]
pub enum Test {
    Equals(String),
    NotEquals(String),
    OneOf(Vec<String>),
    Matches(regex::Regex),
    Exists(bool),
    Cmp(fn(f64, f64) -> bool, f64),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    Field(String, Vec<Test>),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ConditionConfig {
    pub fn compile(&self) -> Result<Condition, Invalid> {
        let err = |path: &[&str], message: String| Invalid {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
        };
        let nested = |key: &str, list: &[ConditionConfig]| -> Result<Vec<Condition>, Invalid> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    c.compile().map_err(|mut e| {
                        e.path.insert(0, i.to_string());
                        e.path.insert(0, key.to_string());
                        e
                    })
                })
                .collect()
        };
        let combinators = [self.all.is_some(), self.any.is_some(), self.not.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if combinators > 1 || (combinators == 1 && self.field.is_some()) {
            return Err(err(&[], "a condition is one of: a `field` test, `all`, `any` or `not`; wrap several in `all:`".into()));
        }
        if let Some(list) = &self.all {
            return Ok(Condition::All(nested("all", list)?));
        }
        if let Some(list) = &self.any {
            return Ok(Condition::Any(nested("any", list)?));
        }
        if let Some(inner) = &self.not {
            return inner
                .compile()
                .map(|c| Condition::Not(Box::new(c)))
                .map_err(|mut e| {
                    e.path.insert(0, "not".into());
                    e
                });
        }
        let Some(field) = &self.field else {
            return Err(err(&[], "a condition needs `field` (with a test such as `equals`), or `all`, `any` or `not`".into()));
        };
        let mut tests = Vec::new();
        if let Some(v) = &self.equals {
            tests.push(Test::Equals(text_of(v)));
        }
        if let Some(v) = &self.not_equals {
            tests.push(Test::NotEquals(text_of(v)));
        }
        if let Some(vs) = &self.one_of {
            tests.push(Test::OneOf(vs.iter().map(text_of).collect()));
        }
        if let Some(p) = &self.matches {
            let re = regex::Regex::new(p).map_err(|e| {
                err(
                    &["matches"],
                    format!(
                        "invalid regex: {}",
                        e.to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                )
            })?;
            tests.push(Test::Matches(re));
        }
        if let Some(b) = self.exists {
            tests.push(Test::Exists(b));
        }
        type Cmp = fn(f64, f64) -> bool;
        let cmps: [(Option<f64>, Cmp); 4] = [
            (self.gt, |a, b| a > b),
            (self.gte, |a, b| a >= b),
            (self.lt, |a, b| a < b),
            (self.lte, |a, b| a <= b),
        ];
        for (v, f) in cmps {
            if let Some(v) = v {
                tests.push(Test::Cmp(f, v));
            }
        }
        if tests.is_empty() {
            return Err(err(
                &["field"],
                format!(
                    "no test for field `{field}`: add equals, not_equals, one_of, matches, exists, gt, gte, lt or lte"
                ),
            ));
        }
        Ok(Condition::Field(field.clone(), tests))
    }
}

impl Condition {
    /// Splits off a leading "field equals one of these values" test, so a
    /// caller with many conditions can look the field up once per event and
    /// index conditions by its value. Returns the field, its values, and
    /// what is left to check (if anything).
    pub fn split_key(&self) -> Option<(String, Vec<String>, Option<Condition>)> {
        let key = |c: &Condition| -> Option<(String, Vec<String>, Option<Condition>)> {
            let Condition::Field(name, tests) = c else {
                return None;
            };
            let pos = tests
                .iter()
                .position(|t| matches!(t, Test::Equals(_) | Test::OneOf(_)))?;
            let values = match &tests[pos] {
                Test::Equals(v) => vec![v.clone()],
                Test::OneOf(vs) => vs.clone(),
                _ => unreachable!(),
            };
            let mut rest = tests.clone();
            rest.remove(pos);
            let rest = (!rest.is_empty()).then(|| Condition::Field(name.clone(), rest));
            Some((name.clone(), values, rest))
        };
        match self {
            Condition::All(cs) => cs.iter().enumerate().find_map(|(i, c)| {
                let (field, values, rest) = key(c)?;
                let mut others: Vec<Condition> = cs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c.clone())
                    .collect();
                others.extend(rest);
                let rest = match others.len() {
                    0 => None,
                    1 => others.pop(),
                    _ => Some(Condition::All(others)),
                };
                Some((field, values, rest))
            }),
            c => key(c),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.matches(event)),
            Condition::Any(cs) => cs.iter().any(|c| c.matches(event)),
            Condition::Not(c) => !c.matches(event),
            Condition::Field(name, tests) => {
                let value = event.get(name);
                tests.iter().all(|t| match t {
                    Test::Exists(want) => value.is_some() == *want,
                    Test::Cmp(f, b) => value.and_then(|v| v.as_f64()).is_some_and(|a| f(a, *b)),
                    t => {
                        let Some(text) = value.and_then(|v| v.as_text()) else {
                            return matches!(t, Test::NotEquals(_));
                        };
                        match t {
                            Test::Equals(s) => text == s.as_str(),
                            Test::NotEquals(s) => text != s.as_str(),
                            Test::OneOf(list) => list.iter().any(|s| text == s.as_str()),
                            Test::Matches(re) => re.is_match(&text),
                            _ => unreachable!(),
                        }
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(yaml: &str) -> Result<Condition, Invalid> {
        crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize::<ConditionConfig>()
            .unwrap()
            .compile()
    }

    fn ev(line: &str) -> Event {
        crate::decode::json::decode_object(line.into(), 0).unwrap()
    }

    #[test]
    fn field_tests() {
        let e = ev(r#"{"level":"ERROR","status_code":503,"path":"/chat"}"#);
        assert!(cond("{field: level, equals: ERROR}").unwrap().matches(&e));
        assert!(
            cond("{field: status_code, equals: 503}")
                .unwrap()
                .matches(&e)
        );
        assert!(
            cond("{field: status_code, gte: 500, lt: 600}")
                .unwrap()
                .matches(&e)
        );
        assert!(!cond("{field: status_code, gt: 503}").unwrap().matches(&e));
        assert!(
            cond("{field: level, one_of: [WARNING, ERROR]}")
                .unwrap()
                .matches(&e)
        );
        assert!(cond("{field: path, matches: '^/ch'}").unwrap().matches(&e));
        assert!(cond("{field: user, exists: false}").unwrap().matches(&e));
        assert!(!cond("{field: user, equals: x}").unwrap().matches(&e));
        assert!(cond("{field: user, not_equals: x}").unwrap().matches(&e));
    }

    #[test]
    fn combinators() {
        let c = cond(
            "all:\n  - {field: level, equals: ERROR}\n  - not: {field: path, matches: health}\n",
        )
        .unwrap();
        assert!(c.matches(&ev(r#"{"level":"ERROR","path":"/chat"}"#)));
        assert!(!c.matches(&ev(r#"{"level":"ERROR","path":"/health"}"#)));
        let c = cond("any: [{field: a, exists: true}, {field: b, exists: true}]").unwrap();
        assert!(c.matches(&ev(r#"{"b":1}"#)));
        assert!(!c.matches(&ev(r#"{"c":1}"#)));
    }

    #[test]
    fn a_leading_equality_splits_off() {
        let c =
            cond("all:\n  - {field: level, equals: ERROR}\n  - {field: event, one_of: [a, b]}\n")
                .unwrap();
        let (field, values, rest) = c.split_key().unwrap();
        assert_eq!(
            (field.as_str(), values),
            ("level", vec!["ERROR".to_string()])
        );
        let rest = rest.unwrap();
        assert!(rest.matches(&ev(r#"{"event":"b"}"#)));
        assert!(!rest.matches(&ev(r#"{"event":"c"}"#)));
        assert!(cond("{field: x, gt: 1}").unwrap().split_key().is_none());
        let (_, _, rest) = cond("{field: x, equals: 1}").unwrap().split_key().unwrap();
        assert!(rest.is_none());
    }

    #[test]
    fn errors_point_at_the_key() {
        let e =
            cond("all:\n  - {field: a, equals: 1}\n  - {field: b, matches: '('}\n").unwrap_err();
        assert_eq!(e.path, ["all", "1", "matches"]);
        assert!(cond("{field: a}").unwrap_err().message.contains("no test"));
        assert!(cond("{}").is_err());
    }
}
