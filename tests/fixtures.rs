//! The committed sample logs are exactly what the generator writes, so they
//! can be regenerated (scripts/gen-fixtures.sh) and the benchmark's workload
//! at scale is the same kind of data the tests read.

use weir_workload::{Workload, WorkloadOptions};

#[test]
fn sample_log_is_the_generator_output() {
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/feynman-sample.log"
    ))
    .unwrap();
    let mut w = Workload::new(WorkloadOptions {
        seed: 7,
        ..Default::default()
    });
    let mut generated = Vec::new();
    w.write_lines(400, &mut generated).unwrap();
    assert!(
        committed == generated,
        "fixtures/feynman-sample.log is stale: run scripts/gen-fixtures.sh"
    );
}

#[test]
fn sample_log_has_what_the_tests_rely_on() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/feynman-sample.log"
    ))
    .unwrap();
    let mut objects = 0;
    let mut broken = 0;
    let mut events = std::collections::HashSet::new();
    let mut traceback = false;
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(o)) => {
                objects += 1;
                if let Some(e) = o.get("event").and_then(|e| e.as_str()) {
                    events.insert(e.to_string());
                }
                let ts = o["timestamp"].as_str().unwrap();
                assert!(
                    ts.ends_with("+00:00") && ts.len() == 32,
                    "isoformat stamp: {ts}"
                );
                traceback |= o
                    .get("exception")
                    .and_then(|e| e.as_str())
                    .is_some_and(|e| e.starts_with("Traceback (most recent call last):\n"));
            }
            _ => broken += 1,
        }
    }
    assert!(objects >= 350, "{objects}");
    assert!(broken >= 3, "uvicorn and truncated lines: {broken}");
    for e in [
        "api_request",
        "tool_call",
        "llm_call",
        "workflow_node",
        "sse_connect",
        "sse_disconnect",
    ] {
        assert!(events.contains(e), "missing {e}");
    }
    assert!(traceback);
    assert!(text.contains("\"taskName\": null"));
    assert!(text.lines().any(|l| l.starts_with("INFO:     ")));
}
