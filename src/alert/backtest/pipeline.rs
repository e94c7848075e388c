//! `weir backtest RULES --logs GLOB [--pipeline P]`: the pipeline a
//! back-test runs, made from the one the rules are meant for.
//!
//! It keeps what derives the metrics — the first file source's `decode`
//! settings, the transforms, the `metrics` sinks (without remote write) —
//! and replaces the rest: one file source reading the given logs from the
//! beginning, the given rule files, no API, no other sink (a back-test
//! ships no logs), no notifiers unless asked for, and checkpoints in a
//! scratch directory so that the same logs can be back-tested again.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::config::{ConfigErrors, Pipeline};

/// What to back-test.
pub struct Request<'a> {
    /// The pipeline text (after `${VAR}` expansion) and where it came from.
    pub text: &'a str,
    pub origin: &'a str,
    pub rules: &'a [String],
    pub logs: &'a [String],
    pub notify: bool,
    /// Where the back-test's checkpoints go.
    pub scratch: &'a Path,
}

/// The back-test pipeline, checked, and the original pipeline's
/// `data_dir` (where the back-test's results go).
pub fn build(req: &Request) -> Result<(Pipeline, std::path::PathBuf), String> {
    let mut root: Value = serde_saphyr::from_str(req.text)
        .map_err(|e| format!("{}: invalid YAML: {e}", req.origin))?;
    let map = root
        .as_object_mut()
        .ok_or_else(|| format!("{}: a pipeline is a mapping", req.origin))?;

    let sources = map.get("sources").and_then(Value::as_object);
    let file_source = sources.and_then(|s| {
        s.iter()
            .find(|(_, v)| v.get("type") == Some(&json!("file")))
            .or_else(|| s.iter().next())
    });
    let (source_name, decode) = match file_source {
        Some((name, v)) => (
            name.clone(),
            v.get("decode")
                .cloned()
                .unwrap_or_else(|| json!({"codec": "json"})),
        ),
        None => (
            "logs".to_string(),
            json!({"codec": "json", "timestamp": {"field": "timestamp"}}),
        ),
    };
    let mut names = vec![source_name.clone()];
    let new_sources = json!({ source_name: {
        "type": "file",
        "include": req.logs,
        "read_from": "beginning",
        "decode": decode,
    }});

    // Transforms whose inputs still exist, until nothing changes.
    let mut transforms = map
        .get("transforms")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    loop {
        let before = transforms.len();
        let known: Vec<String> = names.iter().chain(transforms.keys()).cloned().collect();
        transforms.retain(|_, t| keep_inputs(t, &known));
        if transforms.len() == before {
            break;
        }
    }
    names.extend(transforms.keys().cloned());

    let mut sinks = Map::new();
    for (name, s) in map
        .get("sinks")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
    {
        let mut s = s;
        if s.get("type") != Some(&json!("metrics")) || !keep_inputs(&mut s, &names) {
            continue;
        }
        if let Some(o) = s.as_object_mut() {
            o.remove("remote_write");
        }
        sinks.insert(name, s);
    }
    if sinks.is_empty() {
        return Err(format!(
            "{}: no `metrics` sink reads the logs, so the rules would have nothing to read",
            req.origin
        ));
    }

    let mut alerting = map
        .get("alerting")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    alerting.insert("rule_files".into(), json!(req.rules));
    if !req.notify {
        alerting.remove("notify");
    }

    map.insert("sources".into(), new_sources);
    map.insert("transforms".into(), Value::Object(transforms));
    map.insert("sinks".into(), Value::Object(sinks));
    map.insert("alerting".into(), Value::Object(alerting));
    map.insert("api".into(), json!({"enabled": false}));
    let data_dir = map
        .get("data_dir")
        .and_then(Value::as_str)
        .unwrap_or("./data")
        .into();
    map.insert("data_dir".into(), json!(req.scratch.to_string_lossy()));

    let text = serde_json::to_string_pretty(&root).expect("JSON values serialise");
    let origin = format!("back-test of {}", req.origin);
    let p = Pipeline::from_text(&text, &origin, |_| None).map_err(|ConfigErrors(errors)| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((p, data_dir))
}

/// Drops inputs that are not in `known`; false when none is left.
fn keep_inputs(component: &mut Value, known: &[String]) -> bool {
    let Some(inputs) = component.get_mut("inputs").and_then(Value::as_array_mut) else {
        return false;
    };
    inputs.retain(|i| i.as_str().is_some_and(|n| known.iter().any(|k| k == n)));
    !inputs.is_empty()
}

/// A time for `--from`/`--to`: RFC 3339, a date (midnight UTC), or Unix
/// seconds; in ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| e.to_string());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    Err(format!(
        "`{s}` is not a time: write 2026-11-25T06:00:00Z, 2026-11-25 or Unix seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_derives_metrics_and_nothing_that_ships() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::config::EMBEDDED_DEFAULT.replace("${WEIR_DATA_DIR:-./data}", "./data");
        let expanded = crate::config::env::expand(&text, |_| None).unwrap().text;
        let (p, data_dir) = build(&Request {
            text: &expanded,
            origin: "feynman.yaml",
            rules: &["pipelines/rules/alerting_rules.yml".into()],
            logs: &["old/*.log*".into()],
            notify: false,
            scratch: dir.path(),
        })
        .unwrap();
        assert_eq!(data_dir, std::path::PathBuf::from("./data"));
        assert_eq!(p.sources.len(), 1);
        assert_eq!(p.sources[0].name, "app_logs");
        assert_eq!(p.sinks.len(), 1, "only the metrics sink");
        assert_eq!(p.sinks[0].inputs, vec!["app_logs"]);
        assert!(!p.api.enabled);
        assert!(p.alerting.as_ref().unwrap().config.notify.is_empty());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-11-25").unwrap(), 1_795_564_800_000);
        assert_eq!(
            parse_time("2026-11-25T06:00:00Z").unwrap(),
            1_795_586_400_000
        );
        assert_eq!(parse_time("1795586400").unwrap(), 1_795_586_400_000);
        assert!(parse_time("yesterday").is_err());
    }
}
