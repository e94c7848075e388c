//! `weir validate`'s rule lints with the real binary: warnings on standard
//! error as `warning: FILE:LINE:COL: rule "NAME": message (hint: ...)`,
//! exit 0, or 2 with `--strict`.

mod common;

use common::*;

fn validate(args: &[&str]) -> (Option<i32>, String) {
    let s = Scratch::new();
    let out = s
        .weir(args)
        .current_dir(repo())
        .env_remove("WEIR_RULES")
        .output_within(RUN_LIMIT)
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning: ") && l.contains(": rule \""))
        .collect()
}

#[test]
fn the_plan_pipeline_warns_about_the_rules_that_cannot_fire() {
    let (code, err) = validate(&["validate", "pipelines/feynman.yaml"]);
    assert_eq!(code, Some(0), "{err}");
    let w = warnings(&err);
    assert_eq!(w.len(), 3, "{err}");
    assert!(
        w[0].starts_with(
            "warning: pipelines/rules/alerting_rules.yml:4:5: rule \"HighAPILatency\": histogram_quantile() over `fastapi_request_duration_seconds` has no `le` buckets"
        ),
        "{err}"
    );
    assert!(
        w[0].ends_with(
            "(hint: histogram_quantile(0.95, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m]))), with more labels in `by` to keep them)"
        ),
        "{err}"
    );
    assert!(
        w[1].starts_with(
            "warning: pipelines/rules/alerting_rules.yml:31:5: rule \"ExternalAPIDown\": reads `up`"
        ),
        "{err}"
    );
    assert!(
        w[2].contains("rule \"DailyCostExceeded\": `llm_daily_costs_usd` has one series per day"),
        "{err}"
    );

    let (code, err) = validate(&["validate", "--strict", "pipelines/feynman.yaml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("error: 3 rule lint warning(s)"), "{err}");
}

#[test]
fn a_bare_rule_file_against_a_pipeline_or_alone() {
    let rules = "pipelines/rules/alerting_rules.yml";
    let (code, err) = validate(&["validate", rules, "--pipeline", "pipelines/feynman.yaml"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(warnings(&err).len(), 3, "{err}");
    // Alone, only the lints that need no pipeline: none of the plan's.
    let (code, err) = validate(&["validate", rules, "--strict"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(warnings(&err).is_empty(), "{err}");
    // The app's 30 alone: the dropped labels and the rate units.
    let (code, err) = validate(&["validate", "pipelines/rules/app-alerting-rules.yml"]);
    assert_eq!(code, Some(0), "{err}");
    let names: Vec<&str> = warnings(&err)
        .iter()
        .map(|l| l.split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "HighWorkflowFailureRate",
            "HighLLMFailureRate",
            "SuspiciousHighRequestRate",
            "HighClientErrorRate",
            "RapidTokenGrowth"
        ],
        "{err}"
    );
    // A pipeline that does not load stops before any linting.
    let (code, err) = validate(&["validate", rules, "--pipeline", "no-such.yaml"]);
    assert_eq!(code, Some(2), "{err}");
}
