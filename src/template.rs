//! Values computed from events: metric labels, Loki stream labels and
//! structured metadata, line templates.
//!
//! `"{{ path }}"` inserts a top-level field as text (strings unescaped,
//! numbers as written); a missing field, `null`, an object or an array
//! insert nothing — never an error. `{field: error, pattern: '^(\w+)'}`
//! takes the first capture group of a field. Anything else is fixed text.
//! There are no functions or pipes; this is not Go's text/template.

use std::borrow::Cow;

use serde::Deserialize;

use crate::event::Event;

/// A value written in a pipeline: text, a template over fields
/// (`"{{ method }} {{ path }}"`), or one field's first regex capture
/// (`{field: error, pattern: '^(\\w+)'}`).
#[derive(Debug, Clone)]
pub enum TemplateConfig {
    Template(String),
    Field {
        field: String,
        pattern: Option<String>,
    },
}

impl<'de> Deserialize<'de> for TemplateConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TemplateConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a label value (text or \"{{ field }}\") or {field: …, pattern: …}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TemplateConfig, E> {
                Ok(TemplateConfig::Template(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TemplateConfig, E> {
                Ok(TemplateConfig::Template(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TemplateConfig, E> {
                Ok(TemplateConfig::Template(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TemplateConfig, E> {
                Ok(TemplateConfig::Template(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TemplateConfig, A::Error> {
                let (mut field, mut pattern) = (None, None);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "field" => field = Some(m.next_value::<String>()?),
                        "pattern" => pattern = Some(m.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["field", "pattern"]));
                        }
                    }
                }
                let field = field.ok_or_else(|| de::Error::missing_field("field"))?;
                Ok(TemplateConfig::Field { field, pattern })
            }
        }
        d.deserialize_any(V)
    }
}

/// A piece of a template.
#[derive(Debug, Clone)]
pub enum Part {
    Lit(String),
    Field(String),
}

/// A compiled [`TemplateConfig`].
#[derive(Debug, Clone)]
pub enum Template {
    Static(String),
    Parts(Vec<Part>),
    Field(String, Option<regex::Regex>),
}

/// Parses `"{{ a }}-{{b}}"` into parts.
fn parse_parts(t: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without `}}}}` in `{t}`"))?;
        let field = after[..close].trim();
        if field.is_empty() || field.contains(char::is_whitespace) {
            return Err(format!(
                "`{{{{ {field} }}}}` in `{t}` should name one field, e.g. `{{{{ path }}}}`"
            ));
        }
        parts.push(Part::Field(field.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

impl Template {
    /// Compiles a configured value; the error names the sub-key at fault
    /// (`pattern`) when there is one.
    pub fn compile(cfg: &TemplateConfig) -> Result<Template, (Vec<&'static str>, String)> {
        Ok(match cfg {
            TemplateConfig::Template(t) if t.contains("{{") => {
                Template::Parts(parse_parts(t).map_err(|m| (vec![], m))?)
            }
            TemplateConfig::Template(t) => Template::Static(t.clone()),
            TemplateConfig::Field { field, pattern } => {
                let re = match pattern {
                    None => None,
                    Some(p) => {
                        let re = regex::Regex::new(p).map_err(|e| {
                            (
                                vec!["pattern"],
                                format!(
                                    "invalid regex: {}",
                                    e.to_string()
                                        .split_whitespace()
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                ),
                            )
                        })?;
                        if re.captures_len() < 2 {
                            return Err((
                                vec!["pattern"],
                                "the pattern needs a capture group: its first group is the value"
                                    .into(),
                            ));
                        }
                        Some(re)
                    }
                };
                Template::Field(field.clone(), re)
            }
        })
    }

    /// Whether the value is the same for every event.
    pub fn is_static(&self) -> bool {
        matches!(self, Template::Static(_))
    }

    /// Appends the value for `event` to `out`.
    pub fn render(&self, event: &Event, out: &mut String) {
        match self {
            Template::Static(s) => out.push_str(s),
            Template::Parts(parts) => {
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Field(f) => {
                            out.push_str(&event.get_text(f).unwrap_or(Cow::Borrowed("")))
                        }
                    }
                }
            }
            Template::Field(f, re) => {
                let text = event.get_text(f).unwrap_or(Cow::Borrowed(""));
                match re {
                    None => out.push_str(&text),
                    Some(re) => {
                        if let Some(m) = re.captures(&text).and_then(|c| c.get(1)) {
                            out.push_str(m.as_str());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(yaml: &str) -> Template {
        let cfg: TemplateConfig = crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize()
            .unwrap();
        Template::compile(&cfg).unwrap()
    }

    fn render(t: &Template, line: &str) -> String {
        let e = crate::decode::json::decode_object(line.into(), 0).unwrap();
        let mut out = String::new();
        t.render(&e, &mut out);
        out
    }

    #[test]
    fn templates_fields_and_patterns() {
        assert_eq!(
            render(
                &t("'{{ method }} {{path}}!'"),
                r#"{"method":"GET","path":"/a"}"#
            ),
            "GET /a!"
        );
        assert_eq!(render(&t("'x{{ missing }}y'"), "{}"), "xy");
        assert_eq!(render(&t("'{{ n }}'"), r#"{"n": 200}"#), "200");
        assert_eq!(render(&t("fixed"), "{}"), "fixed");
        assert_eq!(
            render(
                &t("{field: e, pattern: '^(\\w+):'}"),
                r#"{"e":"ReadTimeout: x"}"#
            ),
            "ReadTimeout"
        );
        assert!(t("fixed").is_static());
    }

    #[test]
    fn mistakes_are_reported() {
        let bad = |y: &str| {
            let cfg: TemplateConfig = crate::config::node::Node::parse(y)
                .unwrap()
                .deserialize()
                .unwrap();
            Template::compile(&cfg).unwrap_err()
        };
        assert!(bad("'{{ a b }}'").1.contains("one field"));
        assert!(bad("'{{ a '").1.contains("without"));
        assert_eq!(bad("{field: e, pattern: '\\w+'}").0, ["pattern"]);
        let err: Result<TemplateConfig, _> =
            crate::config::node::Node::parse("{field: e, patern: x}")
                .unwrap()
                .deserialize();
        assert!(err.unwrap_err().message.contains("did you mean `pattern`"));
    }
}
