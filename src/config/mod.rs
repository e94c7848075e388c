//! Pipeline files: YAML in, a checked [`Pipeline`] out.
//!
//! ```yaml
//! data_dir: ${WEIR_DATA_DIR:-./data}
//! api: {address: "${WEIR_API_ADDR:-127.0.0.1:9464}"}
//! sources:
//!   app: {type: file, include: ["./logs/*.log"]}
//! transforms:
//!   errors: {type: filter, inputs: [app], condition: {field: level, equals: ERROR}}
//! sinks:
//!   local: {type: file, inputs: [app], path: "./data/out/%Y-%m-%d.ndjson"}
//! ```
//!
//! Loading expands `${VAR}` / `${VAR:-default}`, parses the YAML into a tree
//! that remembers positions, deserializes each component by its `type`, and
//! checks what serde cannot: regexes, globs, templates and the graph of
//! `inputs` (unknown names, cycles). Every problem found is reported — not just
//! the first — as `file:line:column: component: message`.
//!
//! Building the running components is the topology's job, not this module's.

pub mod env;
pub mod invalid;
pub mod mask;
pub mod node;
pub mod ordered;
pub mod units;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{self, SinkSpec, SourceSpec, TransformSpec};
use node::{Node, NodeKind, Pos, Seg, suggest, unknown_key_message};
use units::Dur;

/// The pipeline that `weir run` uses when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../pipelines/feynman.yaml");

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Option<Pos>,
    /// `sources.app_logs`, `sinks.local`, … when the problem is inside one.
    pub component: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": ")?;
        if let Some(c) = &self.component {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_address")]
    pub address: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Connections served at once; further ones wait in the listen backlog.
    /// Never more than a quarter of the open-file limit, so that sources
    /// keep descriptors for the files they read.
    #[serde(default = "default_api_max_connections")]
    pub max_connections: usize,
    /// A request's headers, and the next request on a kept-alive
    /// connection, must arrive within this; otherwise the connection closes.
    #[serde(default = "default_api_header_read_timeout")]
    pub header_read_timeout: Dur,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: default_api_address(),
            enabled: true,
            max_connections: default_api_max_connections(),
            header_read_timeout: default_api_header_read_timeout(),
        }
    }
}

fn default_api_address() -> String {
    "127.0.0.1:9464".into()
}
fn default_api_max_connections() -> usize {
    256
}
fn default_api_header_read_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Component<K> {
    pub name: String,
    pub pos: Pos,
    pub inputs: Vec<String>,
    pub kind: K,
    /// Sinks only: what holds their input (see `buffer`).
    pub buffer: crate::buffer::Buffer,
}

/// A checked pipeline, ready to be built.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Where it was read from, for messages.
    pub origin: String,
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// How long a stop may take to drain in-flight batches.
    pub grace_period: Duration,
    pub sources: Vec<Component<Arc<dyn SourceSpec>>>,
    pub transforms: Vec<Component<Arc<dyn TransformSpec>>>,
    pub sinks: Vec<Component<Arc<dyn SinkSpec>>>,
    /// The `alerting:` section, its rule files loaded.
    pub alerting: Option<Arc<crate::alert::live::Alerting>>,
    /// Things that work but are probably not meant (a source nobody reads).
    pub warnings: Vec<ConfigError>,
}

const TOP_KEYS: &[&str] = &[
    "data_dir",
    "api",
    "grace_period",
    "sources",
    "transforms",
    "sinks",
    "alerting",
];

impl Pipeline {
    /// Reads and checks a pipeline file, expanding variables from the environment.
    pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: origin.clone(),
                pos: None,
                component: None,
                message: format!("cannot read the pipeline file: {e}"),
            }])
        })?;
        Pipeline::from_text(&text, &origin, |k| std::env::var(k).ok())
    }

    /// Checks pipeline text; `origin` names it in messages.
    pub fn from_text(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Pipeline, ConfigErrors> {
        let mut cx = Checker {
            origin: origin.to_string(),
            named: Vec::new(),
            lints: Vec::new(),
            expanded: None,
            masks: mask::Masks::default(),
            errors: Vec::new(),
        };
        let expanded = match env::expand(text, env) {
            Ok(e) => e,
            Err(errs) => {
                for e in errs {
                    cx.push(Some(e.pos), None, e.message);
                }
                return Err(ConfigErrors(cx.errors));
            }
        };
        cx.masks = mask::Masks::new(&expanded);
        let (root, duplicates) = match Node::parse_document(&expanded.text) {
            Ok(n) => n,
            Err((pos, message)) => {
                let pos = pos.map(|p| expanded.original_pos(p));
                cx.push(pos, None, format!("invalid YAML: {message}"));
                return Err(ConfigErrors(cx.errors));
            }
        };
        cx.masks.add_tree(&expanded, &root);
        cx.expanded = Some(expanded);
        for e in duplicates {
            let component = component_of(&e.path);
            cx.push(e.pos, component.as_deref(), e.message);
        }
        let pipeline = cx.pipeline(&root);
        match pipeline {
            Some(p) if cx.errors.is_empty() => Ok(p),
            _ => Err(ConfigErrors(cx.errors)),
        }
    }
}

struct Checker {
    origin: String,
    /// Every component named in the file, built or not, so that one broken
    /// component does not also make its readers report unknown inputs.
    named: Vec<(String, &'static str, Pos)>,
    /// Warnings found while reading components.
    lints: Vec<ConfigError>,
    expanded: Option<env::Expanded>,
    /// What messages must not show: values from the environment.
    masks: mask::Masks,
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&self, pos: Option<Pos>, component: Option<&str>, message: String) -> ConfigError {
        let pos = match (&self.expanded, pos) {
            (Some(x), Some(p)) => Some(x.original_pos(p)),
            (_, p) => p,
        };
        // Values from the environment are shown as written (`${LOKI_PW}`),
        // and a URL keeps its user but not its password.
        let message = self.masks.apply(&message);
        let message = crate::redact::redact_urls_in(&message).into_owned();
        ConfigError {
            file: self.origin.clone(),
            pos,
            component: component.map(str::to_string),
            message,
        }
    }

    fn push(&mut self, pos: Option<Pos>, component: Option<&str>, message: String) {
        let e = self.error(pos, component, message);
        self.errors.push(e);
    }

    /// Deserializes a node, recording every error in it.
    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        node: &Node,
        component: Option<&str>,
    ) -> Option<T> {
        match node.deserialize_all::<T>() {
            Ok(v) => Some(v),
            Err(errors) => {
                for e in errors {
                    self.push(e.pos.or(Some(node.pos)), component, e.message);
                }
                None
            }
        }
    }

    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        // A file of comments only is an empty document.
        let empty = Node {
            kind: NodeKind::Map(Vec::new()),
            pos: Pos { line: 1, column: 1 },
            span: None,
        };
        let root = if root.kind == NodeKind::Null {
            &empty
        } else {
            root
        };
        let Some(map) = root.as_map() else {
            self.push(
                Some(root.pos),
                None,
                format!(
                    "a pipeline is a mapping with keys {}, found {}",
                    TOP_KEYS.join(", "),
                    root.describe()
                ),
            );
            return None;
        };
        for (k, _) in map {
            let key = k.as_str().unwrap_or("");
            if !TOP_KEYS.contains(&key) {
                self.push(Some(k.pos), None, unknown_key_message(key, TOP_KEYS));
            }
        }
        let data_dir = match root.get("data_dir") {
            Some(n) => self.typed::<String>(n, None).map(PathBuf::from),
            None => Some(PathBuf::from("./data")),
        };
        let api = match root.get("api") {
            Some(n) => self.typed::<ApiConfig>(n, Some("api")),
            None => Some(ApiConfig::default()),
        };
        if let (Some(api), Some(n)) = (&api, root.get("api"))
            && api.enabled
            && api.address.parse::<std::net::SocketAddr>().is_err()
        {
            let pos = n.get("address").map_or(n.pos, |a| a.pos);
            self.push(
                Some(pos),
                Some("api"),
                format!(
                    "`{}` is not an address to listen on; write host:port, e.g. 127.0.0.1:9464",
                    api.address
                ),
            );
        }
        if let (Some(api), Some(n)) = (&api, root.get("api")) {
            if api.max_connections == 0 {
                self.push(
                    Some(locate(n, &["max_connections".into()])),
                    Some("api"),
                    "`max_connections` must be at least 1 (default 256); to turn the API off, write `enabled: false`".into(),
                );
            }
            if api.header_read_timeout.0.is_zero() {
                self.push(
                    Some(locate(n, &["header_read_timeout".into()])),
                    Some("api"),
                    "`header_read_timeout` must be more than 0 (default 10s)".into(),
                );
            }
        }
        let grace_period = match root.get("grace_period") {
            Some(n) => self.typed::<Dur>(n, None).map(|d| d.0),
            None => Some(Duration::from_secs(30)),
        };

        let sources = self.section(root, "sources", component::SOURCES, false);
        let transforms = self.section(root, "transforms", component::TRANSFORMS, true);
        let sinks = self.section(root, "sinks", component::SINKS, true);

        let alerting = root.get("alerting").and_then(|n| self.alerting(n));

        if self.named.is_empty() {
            self.push(
                Some(Pos { line: 1, column: 1 }),
                None,
                "the pipeline is empty: define at least one source and one sink, e.g. `sources: {app: {type: file, include: [\"./logs/*.log\"]}}` and `sinks: {out: {type: console, inputs: [app]}}`".into(),
            );
        }
        let p = Pipeline {
            origin: self.origin.clone(),
            data_dir: data_dir?,
            api: api?,
            grace_period: grace_period?,
            sources,
            transforms,
            sinks,
            alerting,
            warnings: Vec::new(),
        };
        let mut warnings = std::mem::take(&mut self.lints);
        warnings.extend(self.check_graph(&p));
        Some(Pipeline { warnings, ..p })
    }

    /// Reads the `alerting:` section and loads its rule files.
    fn alerting(&mut self, n: &Node) -> Option<Arc<crate::alert::live::Alerting>> {
        let cfg = self.typed::<crate::alert::live::config::AlertingConfig>(n, Some("alerting"))?;
        let base = Path::new(&self.origin).parent().map(Path::to_path_buf);
        match crate::alert::live::Alerting::load(cfg, base.as_deref()) {
            Ok(a) => Some(Arc::new(a)),
            Err(errors) => {
                let rules_pos = n.get("rule_files").map_or(n.pos, |r| r.pos);
                let notify = n.get("notify");
                for e in errors {
                    let pos = match (e.notifier, notify.map(|x| &x.kind)) {
                        (Some(i), Some(NodeKind::Seq(items))) => {
                            items.get(i).map_or(n.pos, |x| x.pos)
                        }
                        (None, _) if e.message.starts_with("notifier ") => {
                            notify.map_or(n.pos, |x| x.pos)
                        }
                        _ => rules_pos,
                    };
                    self.push(Some(pos), Some("alerting"), e.message);
                }
                None
            }
        }
    }

    /// Reads one of `sources`, `transforms`, `sinks`.
    fn section<S: ?Sized>(
        &mut self,
        root: &Node,
        key: &str,
        table: &[component::Kind<S>],
        takes_inputs: bool,
    ) -> Vec<Component<Arc<S>>> {
        let names = component::names(table);
        let types = names.as_slice();
        let mut out = Vec::new();
        let Some(section) = root.get(key) else {
            return out;
        };
        let entries = match &section.kind {
            NodeKind::Map(m) => m,
            NodeKind::Null => return out,
            _ => {
                self.push(
                    Some(section.pos),
                    None,
                    format!(
                        "`{key}` is a mapping from component names to their settings, found {}",
                        section.describe()
                    ),
                );
                return out;
            }
        };
        let kind: &'static str = match key {
            "sources" => "source",
            "transforms" => "transform",
            _ => "sink",
        };
        for (name_node, body) in entries {
            let name = name_node.as_str().unwrap_or("").to_string();
            self.named.push((name.clone(), kind, name_node.pos));
            let component = format!("{key}.{name}");
            let c = Some(component.as_str());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_alphanumeric() || "_-.".contains(ch))
            {
                self.push(
                    Some(name_node.pos),
                    c,
                    "component names use letters, digits, `_`, `-` and `.`".into(),
                );
                continue;
            }
            if body.as_map().is_none() {
                self.push(
                    Some(body.pos),
                    c,
                    format!(
                        "expected the {kind}'s settings (a mapping with `type`), found {}",
                        body.describe()
                    ),
                );
                continue;
            }
            let ty = match body.get("type") {
                None => {
                    self.push(
                        Some(body.pos),
                        c,
                        format!("missing `type`; {kind} types are: {}", types.join(", ")),
                    );
                    continue;
                }
                Some(t) => match t.as_str() {
                    Some(s) if types.contains(&s) => s.to_string(),
                    other => {
                        let mut m = format!(
                            "unknown {kind} type `{}`; known types: {}",
                            other.unwrap_or("?"),
                            types.join(", ")
                        );
                        if let Some(s) = other.and_then(|o| suggest(o, types.iter().copied())) {
                            m = format!(
                                "unknown {kind} type `{}`: did you mean `{s}`?",
                                other.unwrap_or("?")
                            );
                        }
                        self.push(Some(t.pos), c, m);
                        continue;
                    }
                },
            };
            let inputs = match (body.get("inputs"), takes_inputs) {
                (Some(n), false) => {
                    self.push(
                        Some(n.pos),
                        c,
                        "sources read from outside weir and take no `inputs`".into(),
                    );
                    Vec::new()
                }
                (None, true) => {
                    self.push(
                        Some(body.pos),
                        c,
                        format!("missing `inputs`: list the components this {kind} reads from"),
                    );
                    Vec::new()
                }
                (None, false) => Vec::new(),
                (Some(n), true) => self.typed::<Vec<String>>(n, c).unwrap_or_default(),
            };
            let buffer = match body.get("buffer") {
                None => crate::buffer::Buffer::Channel,
                Some(n) if kind != "sink" => {
                    self.push(
                        Some(n.pos),
                        c,
                        format!(
                            "only sinks take a `buffer`; a {kind} hands its output on as it comes"
                        ),
                    );
                    crate::buffer::Buffer::Channel
                }
                Some(n) => match self.typed::<crate::buffer::BufferConfig>(n, c) {
                    None => crate::buffer::Buffer::Channel,
                    Some(b) => match b.check() {
                        Ok(b) => b,
                        Err((key, message)) => {
                            let pos = n.get(key).map_or(n.pos, |k| k.pos);
                            self.push(Some(pos), c, message);
                            crate::buffer::Buffer::Channel
                        }
                    },
                },
            };
            let opts = body.without_keys(&["type", "inputs", "buffer"]);
            let kind_def = component::find(table, &ty).expect("type checked above");
            let mut cx = CheckCx {
                checker: self,
                body: &opts,
                component: component.clone(),
            };
            if let Some(k) = (kind_def.check)(&mut cx) {
                out.push(Component {
                    name,
                    pos: name_node.pos,
                    inputs,
                    kind: k,
                    buffer,
                });
            }
        }
        out
    }

    /// Unknown inputs, duplicate names, cycles; returns warnings.
    fn check_graph(&mut self, p: &Pipeline) -> Vec<ConfigError> {
        let named = std::mem::take(&mut self.named);
        let mut kinds: HashMap<&str, &str> = HashMap::new();
        for (name, kind, pos) in &named {
            if let Some(other) = kinds.insert(name, kind) {
                self.push(Some(*pos), Some(&format!("{kind}s.{name}")), format!("the name `{name}` is also used by a {other}; component names must be unique"));
            }
        }
        let all: Vec<(&str, &str, Pos, &Vec<String>)> = p
            .sources
            .iter()
            .map(|c| (c.name.as_str(), "source", c.pos, &c.inputs))
            .chain(
                p.transforms
                    .iter()
                    .map(|c| (c.name.as_str(), "transform", c.pos, &c.inputs)),
            )
            .chain(
                p.sinks
                    .iter()
                    .map(|c| (c.name.as_str(), "sink", c.pos, &c.inputs)),
            )
            .collect();
        let mut used: HashSet<&str> = HashSet::new();
        for (name, kind, pos, inputs) in &all {
            for input in inputs.iter() {
                used.insert(input);
                let component = format!("{kind}s.{name}");
                match kinds.get(input.as_str()) {
                    None => {
                        let mut m = format!(
                            "input `{input}` is not a source or transform of this pipeline"
                        );
                        if let Some(s) = suggest(
                            input,
                            kinds.iter().filter(|(_, k)| **k != "sink").map(|(n, _)| *n),
                        ) {
                            m.push_str(&format!("; did you mean `{s}`?"));
                        }
                        self.push(Some(*pos), Some(&component), m);
                    }
                    Some(&"sink") => self.push(
                        Some(*pos),
                        Some(&component),
                        format!("input `{input}` is a sink; sinks have no output"),
                    ),
                    Some(_) if input == name => self.push(
                        Some(*pos),
                        Some(&component),
                        "a component cannot read its own output".into(),
                    ),
                    Some(_) => {}
                }
            }
        }
        // Cycles among transforms: depth-first search over inputs.
        let graph: HashMap<&str, &Vec<String>> = p
            .transforms
            .iter()
            .map(|t| (t.name.as_str(), &t.inputs))
            .collect();
        let mut state: HashMap<&str, u8> = HashMap::new(); // 1 visiting, 2 done
        fn visit<'a>(
            n: &'a str,
            g: &HashMap<&'a str, &'a Vec<String>>,
            st: &mut HashMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<&'a str>> {
            match st.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let start = path.iter().position(|x| *x == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n);
                    return Some(cycle);
                }
                _ => {}
            }
            st.insert(n, 1);
            path.push(n);
            for i in g.get(n).map(|v| v.as_slice()).unwrap_or(&[]) {
                if g.contains_key(i.as_str())
                    && let Some(c) = visit(i, g, st, path)
                {
                    return Some(c);
                }
            }
            path.pop();
            st.insert(n, 2);
            None
        }
        for t in &p.transforms {
            let mut path = Vec::new();
            if let Some(cycle) = visit(&t.name, &graph, &mut state, &mut path) {
                self.push(
                    Some(t.pos),
                    Some(&format!("transforms.{}", t.name)),
                    format!("inputs form a cycle: {}", cycle.join(" -> ")),
                );
                break;
            }
        }
        let mut warnings = Vec::new();
        for (name, kind, pos, _) in &all {
            if *kind != "sink" && !used.contains(name) {
                warnings.push(self.error(
                    Some(*pos),
                    Some(&format!("{kind}s.{name}")),
                    "no sink or transform reads this component's output".into(),
                ));
            }
        }
        if p.sinks.is_empty() {
            warnings.push(self.error(
                None,
                None,
                "the pipeline has no sinks; events are read and discarded".into(),
            ));
        }
        warnings
    }
}

/// `sources.app`, `api`, … for a path from the top of the file.
fn component_of(path: &[Seg]) -> Option<String> {
    match path {
        [Seg::Key(section), Seg::Key(name), ..]
            if ["sources", "transforms", "sinks"].contains(&section.as_str()) =>
        {
            Some(format!("{section}.{name}"))
        }
        [Seg::Key(top), ..] if top == "api" => Some("api".into()),
        _ => None,
    }
}

/// What a component kind's check works with: the component's settings
/// (without `type` and `inputs`) and a way to report problems at the
/// position of the key they concern.
pub struct CheckCx<'a> {
    checker: &'a mut Checker,
    body: &'a Node,
    component: String,
}

impl CheckCx<'_> {
    /// The settings as YAML, for checks that need more than their values.
    pub fn body(&self) -> &Node {
        self.body
    }

    /// `sources.app_logs`, `sinks.local`, …
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The settings as `T`; every problem is recorded, and then `None`.
    pub fn typed<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        self.checker.typed(self.body, Some(&self.component))
    }

    /// A problem with the setting at `path` (keys, or list indices).
    pub fn error<P: AsRef<str>>(&mut self, path: &[P], message: impl Into<String>) {
        let path: Vec<String> = path.iter().map(|p| p.as_ref().to_string()).collect();
        let pos = locate(self.body, &path);
        self.checker
            .push(Some(pos), Some(&self.component), message.into());
    }

    /// A key of the settings that does not belong there, at the key itself.
    pub fn error_at_key(&mut self, key: &str, message: impl Into<String>) {
        let pos = self
            .body
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            .map_or(self.body.pos, |(k, _)| k.pos);
        self.checker
            .push(Some(pos), Some(&self.component), message.into());
    }

    /// Something that works but is probably not meant.
    pub fn warn<P: AsRef<str>>(&mut self, path: &[P], message: impl Into<String>) {
        let path: Vec<String> = path.iter().map(|p| p.as_ref().to_string()).collect();
        let pos = locate(self.body, &path);
        let w = self
            .checker
            .error(Some(pos), Some(&self.component), message.into());
        self.checker.lints.push(w);
    }

    /// A problem a check of the settings returned.
    pub fn report(&mut self, e: invalid::Invalid) {
        self.error(&e.path, e.message);
    }

    /// Whether any problem was recorded for this component so far.
    pub fn has_errors(&self) -> bool {
        let c = Some(self.component.as_str());
        self.checker
            .errors
            .iter()
            .any(|e| e.component.as_deref() == c)
    }
}

/// The position of the node at `path` below `node` (as deep as it exists).
fn locate(node: &Node, path: &[String]) -> Pos {
    let mut cur = node;
    for seg in path {
        let next = match &cur.kind {
            NodeKind::Map(_) => cur.get(seg),
            NodeKind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur.pos
}

#[cfg(test)]
mod tests;
