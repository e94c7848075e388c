//! The test file format (promtool 2.42's `unitTestFile`, read strictly:
//! unknown fields are errors) and how rule file paths are resolved (Go's
//! `filepath.Join` and `filepath.Glob`). Not here: YAML error texts as
//! `yaml.v2` words them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::Deserialize;

/// A YAML scalar read as text, whatever its type (`yaml.v2` decodes `1`
/// into a Go string as `"1"`).
#[derive(Debug, Clone, Default)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) type Map = Option<BTreeMap<String, Scalar>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFile {
    pub(super) rule_files: Option<Vec<String>>,
    pub(super) evaluation_interval: Option<String>,
    pub(super) group_eval_order: Option<Vec<String>>,
    pub(super) tests: Option<Vec<TestGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestGroup {
    pub(super) interval: Option<String>,
    pub(super) input_series: Option<Vec<InputSeries>>,
    pub(super) alert_rule_test: Option<Vec<AlertTest>>,
    pub(super) promql_expr_test: Option<Vec<ExprTest>>,
    pub(super) external_labels: Map,
    pub(super) external_url: Option<String>,
    pub(super) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputSeries {
    pub(super) series: Option<Scalar>,
    pub(super) values: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertTest {
    pub(super) eval_time: Option<String>,
    pub(super) alertname: Option<String>,
    pub(super) exp_alerts: Option<Vec<ExpAlert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpAlert {
    pub(super) exp_labels: Map,
    pub(super) exp_annotations: Map,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExprTest {
    pub(super) expr: Option<String>,
    pub(super) eval_time: Option<String>,
    pub(super) exp_samples: Option<Vec<ExpSample>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpSample {
    pub(super) labels: Option<String>,
    pub(super) value: Option<f64>,
}

/// Runs every test file, writing what promtool writes (the file names and
/// `SUCCESS` to `out`, `FAILED:` and failures to `err`). True when every
/// Go's text for an OS error (`no such file or directory`).
pub(super) fn os_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Go's `filepath.Join` (which cleans the result).
pub(super) fn clean_join(base: &str, rel: &str) -> String {
    let joined = if base.is_empty() {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    };
    let abs = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if abs => {}
            _ => parts.push(p),
        }
    }
    let s = parts.join("/");
    match (abs, s.is_empty()) {
        (true, _) => format!("/{s}"),
        (false, true) => ".".into(),
        (false, false) => s,
    }
}

/// Go's `filepath.Glob` for patterns with meta characters in the last
/// path element only (a pattern with them in a directory matches
/// nothing); matches sorted by name.
pub(crate) fn glob(pattern: &str) -> Vec<String> {
    let meta = |s: &str| s.contains(['*', '?', '[', '\\']);
    if !meta(pattern) {
        return match std::fs::symlink_metadata(pattern) {
            Ok(_) => vec![pattern.to_string()],
            Err(_) => Vec::new(),
        };
    }
    let (dir, name) = match pattern.rfind('/') {
        Some(i) => (&pattern[..i.max(1)], &pattern[i + 1..]),
        None => (".", pattern),
    };
    if meta(dir) {
        return Vec::new();
    }
    let Ok(g) = globset::GlobBuilder::new(name)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
    else {
        return Vec::new();
    };
    let m = g.compile_matcher();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| m.is_match(n))
        .collect();
    names.sort();
    let prefix = if pattern.contains('/') {
        format!("{}/", dir.trim_end_matches('/'))
    } else {
        String::new()
    };
    names.into_iter().map(|n| format!("{prefix}{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_as_go() {
        assert_eq!(clean_join("tests/x", "../r.yml"), "tests/r.yml");
        assert_eq!(clean_join(".", "r.yml"), "r.yml");
        assert_eq!(clean_join("", "./a/b.yml"), "a/b.yml");
        assert_eq!(clean_join("/a", "../../b"), "/b");
    }
}
