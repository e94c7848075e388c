//! Placeholder for alert templates: only checks that `{{` and `}}` balance.
//!
//! The real module (Go `text/template` with Prometheus' functions) is being
//! written separately and replaces this file on merge, keeping [`check`].
//! This placeholder does not parse actions, pipelines or functions.

/// Checks that every `{{` is closed by a `}}` before the next `{{`.
pub fn check(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        match (after.find("}}"), after.find("{{")) {
            (Some(close), Some(next)) if next < close => {
                return Err("unexpected \"{{\" in action".into());
            }
            (Some(close), _) => rest = &after[close + 2..],
            (None, _) => return Err("unclosed action".into()),
        }
    }
    // A lone `}}` is text to Go's text/template.
    Ok(())
}
