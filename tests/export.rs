//! `weir rules export`: what it writes passes promtool (Prometheus), and
//! the Loki rewrite of the shipped rules is what it should be.

mod common;

use std::process::Command;

use common::*;

fn export(s: &Scratch, args: &[&str]) -> (String, String) {
    let out = s
        .weir(&[&["rules", "export"], args].concat())
        .env("WEIR_API_ADDR", "127.0.0.1:9464")
        .env("ALERTMANAGER_URL", "http://127.0.0.1:9093")
        .current_dir(repo())
        .output_within(RUN_LIMIT)
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn promtool(args: &[&str]) {
    let out = Command::new("/usr/bin/promtool").args(args).output_within(RUN_LIMIT).expect(
        "promtool is not installed: run scripts/test.sh, which installs the Debian packages the tests need",
    );
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_export_passes_promtool() {
    let s = Scratch::new();
    for pipeline in ["pipelines/feynman.yaml", "pipelines/alerting.yaml"] {
        let dir = s.path(pipeline);
        let dir = dir.to_str().unwrap();
        export(
            &s,
            &["--to", "prometheus", "--pipeline", pipeline, "-o", dir],
        );
        let config = std::fs::read_to_string(format!("{dir}/prometheus.yml")).unwrap();
        assert!(config.contains("targets: [\"127.0.0.1:9464\"]"), "{config}");
        assert!(config.contains("scrape_interval: 15s"), "{config}");
        assert!(config.contains("targets: [\"127.0.0.1:9093\"]"), "{config}");
        promtool(&["check", "config", &format!("{dir}/prometheus.yml")]);
        let rules = std::fs::read_dir(format!("{dir}/rules")).unwrap();
        for r in rules {
            let r = r.unwrap().path();
            let copied = std::fs::read_to_string(&r).unwrap();
            let name = r.file_name().unwrap().to_str().unwrap();
            let original = std::fs::read_to_string(repo().join("pipelines/rules").join(name));
            assert_eq!(copied, original.unwrap(), "{name} is copied unchanged");
            promtool(&["check", "rules", r.to_str().unwrap()]);
        }
    }
}

#[test]
fn loki_export_of_the_plans_rules() {
    let s = Scratch::new();
    let dir = s.path("loki");
    let (_, stderr) = export(
        &s,
        &[
            "--to",
            "loki",
            "--selector",
            "{app=\"feynman\"}",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("2 of 6 rules exported to Loki (4 refused)"),
        "{stderr}"
    );
    for refused in [
        "HighAPILatency",
        "ExternalAPIDown",
        "HighTokenUsage",
        "DailyCostExceeded",
    ] {
        assert!(
            stderr.contains(&format!("rule {refused:?}: ")),
            "{refused}: {stderr}"
        );
    }
    let text = std::fs::read_to_string(dir.join("alerting_rules.yml")).unwrap();
    let sel = r#"{app=\"feynman\"} | json"#;
    let high_error_rate = format!(
        r#"expr: "sum by (method, endpoint, status_code) (rate({sel} | event=\"api_request\" | label_format endpoint=path | status_code=~\"5..\" [5m]) or rate({sel} | event=\"api_error\" | label_format endpoint=path, status_code=\"500\" | status_code=~\"5..\" [5m])) > 0.1""#
    );
    assert!(text.contains(&high_error_rate), "{text}");
    let tool_call_failures = format!(
        r#"expr: "sum by (tool_name, error_type) (rate({sel} | event=\"tool_call\" | status=\"error\" [5m])) > 0.05""#
    );
    assert!(text.contains(&tool_call_failures), "{text}");
    // Still a rule file in Prometheus' format (Loki's ruler reads the same).
    assert!(
        text.contains("- alert: \"ToolCallFailures\"\n    expr:"),
        "{text}"
    );
    assert!(text.contains("    for: 2m\n"), "{text}");
}

#[test]
fn loki_export_of_the_apps_rules() {
    let s = Scratch::new();
    let dir = s.path("loki");
    let (_, stderr) = export(
        &s,
        &[
            "--to",
            "loki",
            "--pipeline",
            "pipelines/alerting.yaml",
            "--selector",
            "{app=\"feynman\"}",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("11 of 30 rules exported to Loki (19 refused)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("refused: ").count(), 19, "{stderr}");
    let text = std::fs::read_to_string(dir.join("app-alerting-rules.yml")).unwrap();
    let exprs: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("expr: "))
        .collect();
    assert_eq!(exprs.len(), 11, "{text}");
    for e in &exprs {
        // Plausible LogQL: balanced, every log query parsed as JSON over the selector.
        let e = e.trim_start().trim_start_matches("expr: ");
        let depth = e.chars().try_fold(0i32, |d, c| match c {
            '(' => Some(d + 1),
            ')' => (d > 0).then(|| d - 1),
            _ => Some(d),
        });
        assert_eq!(depth, Some(0), "{e}");
        assert_eq!(
            e.matches(r#"{app=\"feynman\"}"#).count(),
            e.matches(r#"{app=\"feynman\"} | json"#).count(),
            "{e}"
        );
    }
    assert!(text.contains(r#"quantile_over_time(0.95, {app=\"feynman\"} | json | event=\"api_request\" | label_format endpoint=path | unwrap duration_ms | __error__=\"\" [5m]) by (method, endpoint) / 1000) > 5"#), "{text}");
}

#[test]
fn loki_export_needs_a_selector_without_a_loki_sink() {
    let s = Scratch::new();
    let out = s
        .weir(&[
            "rules",
            "export",
            "--to",
            "loki",
            "-o",
            s.path("x").to_str().unwrap(),
        ])
        .current_dir(repo())
        .output_within(RUN_LIMIT)
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--selector"));
}
