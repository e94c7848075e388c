//! User message templates: Go `text/template` syntax over Alertmanager's
//! notification template data, so templates written for Alertmanager's
//! receivers work unchanged:
//!
//! ```text
//! [{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}
//! {{ range .Alerts.Firing }}- {{ .Annotations.summary }} ({{ .StartsAt.Format "2006-01-02 15:04:05" }})
//! {{ end }}
//! ```
//!
//! The data (`.Receiver`, `.Status`, `.Alerts`, `.Alerts.Firing`,
//! `.Alerts.Resolved`, `.GroupLabels`, `.CommonLabels`,
//! `.CommonAnnotations`, `.ExternalURL`; per alert `.Status`, `.Labels`,
//! `.Annotations`, `.StartsAt`, `.EndsAt`, `.GeneratorURL`,
//! `.Fingerprint`), the label-map methods (`.SortedPairs`, `.Names`,
//! `.Values`, `.Remove`), time methods (`.Format`, `.Unix`, …) and the
//! functions (`toUpper`, `toLower`, `title`, `join`, `reReplaceAll`,
//! `stringSlice`, `safeHtml`, `date`, …) are described in
//! `alert::template::am`. Times are UTC; a firing alert's `.EndsAt` is Go's
//! zero time (`0001-01-01 00:00:00 +0000 UTC`), as in weir's webhook.

use super::{Notification, fingerprint};
use crate::alert::template::{MessageAlert, MessageData, Template};

/// A parsed message template.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    tmpl: Template,
}

impl MessageTemplate {
    /// Parses `text`; `name` names it in errors (`template: NAME:LINE: …`).
    pub fn parse(name: &str, text: &str) -> Result<MessageTemplate, String> {
        Template::parse_message(name, text).map(|tmpl| MessageTemplate { tmpl })
    }

    /// Renders the message for a notification.
    pub fn render(&self, n: &Notification) -> Result<String, String> {
        self.tmpl.render_message(&message_data(n))
    }
}

fn owned<'a>(
    it: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<String, String> {
    it.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Alertmanager's template data for a notification.
pub fn message_data(n: &Notification) -> MessageData {
    let alerts = n
        .alerts
        .iter()
        .map(|na| {
            let a = &na.alert;
            MessageAlert {
                status: if na.is_resolved() {
                    "resolved"
                } else {
                    "firing"
                }
                .to_string(),
                labels: owned(a.labels.iter()),
                annotations: owned(a.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                starts_at_ms: a.fired_at.unwrap_or(a.active_at),
                ends_at_ms: a.resolved_at,
                generator_url: na.generator_url.clone(),
                fingerprint: fingerprint(&a.labels),
            }
        })
        .collect();
    MessageData {
        receiver: n.receiver.clone(),
        status: n.status().to_string(),
        alerts,
        group_labels: owned(n.group_labels.iter()),
        common_labels: owned(n.common_labels().into_iter()),
        common_annotations: owned(n.common_annotations().into_iter()),
        external_url: n.external_url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notify::NotifyAlert;
    use crate::alert::promql::Labels;
    use crate::alert::state::{Alert, AlertState};

    /// 2025-01-31T08:00:00Z.
    const T0: i64 = 1_738_310_400_000;

    fn alert(instance: &str, summary: &str, resolved_at: Option<i64>) -> NotifyAlert {
        NotifyAlert {
            alert: Alert {
                state: if resolved_at.is_some() {
                    AlertState::Inactive
                } else {
                    AlertState::Firing
                },
                labels: Labels::from_pairs([
                    ("alertname", "HighErrorRate"),
                    ("severity", "critical"),
                    ("instance", instance),
                ]),
                annotations: vec![("summary".into(), summary.into())],
                value: 0.25,
                active_at: T0 - 60_000,
                fired_at: Some(T0 + 1_500),
                resolved_at,
                last_sent_at: None,
                valid_until: None,
                keep_firing_since: None,
            },
            generator_url: "http://weir/graph?g0.expr=x".into(),
        }
    }

    fn notification() -> Notification {
        Notification {
            receiver: "oncall".into(),
            group_labels: Labels::from_pairs([("alertname", "HighErrorRate")]),
            alerts: vec![
                alert("a:9100", "错误率过高", None),
                alert("b:9100", "错误率恢复", Some(T0 + 600_000)),
            ],
            external_url: "http://weir:9300".into(),
        }
    }

    fn render(text: &str) -> Result<String, String> {
        MessageTemplate::parse("msg", text)?.render(&notification())
    }

    #[test]
    fn chinese_template() {
        let t = "【告警】{{ .CommonLabels.alertname }} 共 {{ len .Alerts.Firing }} 条触发，{{ len .Alerts.Resolved }} 条恢复\n\
                 {{ range .Alerts }}{{ if eq .Status \"firing\" }}🔥{{ else }}✅{{ end }} {{ .Annotations.summary }}\n{{ end }}";
        assert_eq!(
            render(t).unwrap(),
            "【告警】HighErrorRate 共 1 条触发，1 条恢复\n🔥 错误率过高\n✅ 错误率恢复\n"
        );
    }

    #[test]
    fn range_over_firing() {
        let t = r#"[{{ .Status | toUpper }}:{{ .Alerts.Firing | len }}] {{ .GroupLabels.alertname }} to {{ .Receiver }}
{{- range .Alerts.Firing }}
- {{ .Labels.instance }} since {{ .StartsAt.Format "2006-01-02 15:04:05" }} ({{ .StartsAt }}) ends {{ .EndsAt }} {{ .Fingerprint | len }}
{{- end }}
{{ range .Alerts.Resolved }}resolved {{ .Labels.instance }} at {{ date "Jan 2 15:04 MST" .EndsAt }}{{ end }}"#;
        assert_eq!(
            render(t).unwrap(),
            "[FIRING:1] HighErrorRate to oncall\n\
             - a:9100 since 2025-01-31 08:00:01 (2025-01-31 08:00:01.5 +0000 UTC) ends 0001-01-01 00:00:00 +0000 UTC 16\n\
             resolved b:9100 at Jan 31 08:10 UTC"
        );
    }

    #[test]
    fn labels_and_functions() {
        let cases = [
            (
                "{{ .CommonLabels }}",
                "alertname=HighErrorRate, severity=critical",
            ),
            (
                "{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
                "alertname=HighErrorRate;severity=critical;",
            ),
            (
                "{{ .CommonLabels.Names | join \"/\" }}",
                "alertname/severity",
            ),
            (
                "{{ .CommonLabels.Values.Join \",\" }}",
                "HighErrorRate,critical",
            ),
            (
                "{{ (.CommonLabels.Remove (stringSlice \"alertname\")).SortedPairs }}",
                "severity=critical",
            ),
            ("{{ join \"+\" (stringSlice \"a\" \"b\") }}", "a+b"),
            (
                "{{ \"hello wORLD\" | title }} {{ toLower \"ABC\" }}",
                "Hello World abc",
            ),
            ("{{ reReplaceAll \":.*\" \"\" \"a:9100\" }}", "a"),
            ("{{ safeHtml \"<b>\" }} {{ trimSpace \"  x \" }}", "<b> x"),
            (
                "{{ .ExternalURL }} {{ .CommonAnnotations.summary }}|",
                "http://weir:9300 |",
            ),
            ("{{ (index .Alerts 0).StartsAt.Unix }}", "1738310401"),
            (
                "{{ .CommonLabels.missing }}|{{ index .GroupLabels \"alertname\" }}",
                "|HighErrorRate",
            ),
            (
                "{{ with index .Alerts.Firing 0 }}{{ .Labels.severity }}{{ end }}",
                "critical",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(render(t).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            MessageTemplate::parse("msg", "{{ .Status | nope }}").unwrap_err(),
            "template: msg:1: function \"nope\" not defined"
        );
        assert!(MessageTemplate::parse("msg", "{{ range .Alerts }}").is_err());
        // Prometheus' functions are not Alertmanager's.
        assert!(MessageTemplate::parse("msg", "{{ humanize 1 }}").is_err());
        let e = render("{{ .Nope }}").unwrap_err();
        assert!(
            e.contains("can't evaluate field Nope in type template.Data"),
            "{e}"
        );
    }
}
