//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde's internally tagged enums and `flatten` buffer their input and lose
//! source positions, so weir parses a pipeline file once into this tree and then
//! deserializes each component body from it with [`NodeDeserializer`]. Every
//! error raised while doing so carries the line and column of the node at fault.
//!
//! This module knows nothing about pipelines; it only maps YAML to typed values.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// A position in the (expanded) source text, 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Where a node was written in the (expanded) text, in characters from the
/// start; for a scalar, its whole text, quotes included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

/// One YAML node and the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
    /// `None` when the parser did not say.
    pub span: Option<Span>,
}

impl Node {
    /// Parses a whole YAML document. The error is rendered by serde-saphyr and
    /// carries its own position. A key written twice in one mapping is an
    /// error too.
    pub fn parse(text: &str) -> Result<Node, (Option<Pos>, String)> {
        let (node, duplicates) = Node::parse_document(text)?;
        match duplicates.into_iter().next() {
            Some(e) => Err((e.pos, e.message)),
            None => Ok(node),
        }
    }

    /// Parses a whole YAML document, and takes out every key written again
    /// in the same mapping (the first stays), each with an error at the
    /// repeated key, so that the rest can still be checked.
    pub fn parse_document(text: &str) -> Result<(Node, Vec<NodeError>), (Option<Pos>, String)> {
        if text.trim().is_empty() {
            let empty = Node {
                kind: NodeKind::Map(Vec::new()),
                pos: Pos { line: 1, column: 1 },
                span: None,
            };
            return Ok((empty, Vec::new()));
        }
        // YAML 1.2 booleans only: `n`, `no`, `off` stay strings (the
        // "Norway problem"), so `value: n` names a field. Repeated keys are
        // passed through and reported here, in weir's words.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let mut node = serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            (pos, first_line(&e.to_string()))
        })?;
        let mut duplicates = Vec::new();
        node.remove_duplicate_keys(&mut Vec::new(), &mut duplicates);
        Ok((node, duplicates))
    }

    fn remove_duplicate_keys(&mut self, path: &mut Vec<Seg>, out: &mut Vec<NodeError>) {
        match &mut self.kind {
            NodeKind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    item.remove_duplicate_keys(path, out);
                    path.pop();
                }
            }
            NodeKind::Map(entries) => {
                let mut kept: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
                for (k, mut v) in entries.drain(..) {
                    if let Some((first, _)) = kept.iter().find(|(f, _)| same_key(f, &k)) {
                        out.push(NodeError {
                            path: path.clone(),
                            ..NodeError::at(
                                k.pos,
                                format!(
                                    "duplicate key `{}`: it is already defined at line {}; remove one of the two",
                                    k.key_text(),
                                    first.pos.line
                                ),
                            )
                        });
                        continue;
                    }
                    path.push(Seg::Key(k.key_text()));
                    v.remove_duplicate_keys(path, out);
                    path.pop();
                    kept.push((k, v));
                }
                *entries = kept;
            }
            _ => {}
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A mapping key as text: a string as it is, another scalar as YAML
    /// writes it.
    pub fn key_text(&self) -> String {
        match &self.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Null => "null".into(),
            NodeKind::Seq(_) | NodeKind::Map(_) => format!("<{}>", self.describe()),
        }
    }

    /// What this node is, in words for an error message.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "nothing (null)",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// A copy of this mapping without the given keys.
    pub fn without_keys(&self, keys: &[&str]) -> Node {
        match &self.kind {
            NodeKind::Map(m) => Node {
                kind: NodeKind::Map(
                    m.iter()
                        .filter(|(k, _)| !k.as_str().is_some_and(|k| keys.contains(&k)))
                        .cloned()
                        .collect(),
                ),
                pos: self.pos,
                span: self.span,
            },
            _ => self.clone(),
        }
    }

    /// Deserializes a typed value from this node.
    pub fn deserialize<T: de::DeserializeOwned>(&self) -> Result<T, NodeError> {
        T::deserialize(NodeDeserializer { node: self })
    }

    /// Like [`Node::deserialize`], but finds every problem, not just the
    /// first: after each error the entry at fault is taken out and the rest
    /// is read again. A key that is then missing only because it was taken
    /// out (or because it was misspelt, and the error said so) is not
    /// reported; the mapping that needs it is taken out in turn.
    pub fn deserialize_all<T: de::DeserializeOwned>(&self) -> Result<T, Vec<NodeError>> {
        let mut work: Option<Node> = None;
        let mut removed: Vec<Vec<Seg>> = Vec::new();
        // Where a misspelt key was, and the key it was meant to be.
        let mut typos: Vec<(Vec<Seg>, String)> = Vec::new();
        let mut errors = Vec::new();
        loop {
            let e = match work.as_ref().unwrap_or(self).deserialize::<T>() {
                Ok(v) if errors.is_empty() => return Ok(v),
                Ok(_) => return Err(errors),
                Err(e) => e,
            };
            let ours = e.missing.as_ref().is_some_and(|key| {
                let mut p = e.path.clone();
                p.push(Seg::Key(key.clone()));
                removed.contains(&p) || typos.iter().any(|(at, k)| *at == e.path && k == key)
            });
            if let (Some(s), Some((_, container))) = (&e.suggested, e.path.split_last()) {
                typos.push((container.to_vec(), s.clone()));
            }
            let target = e.path.clone();
            if !ours {
                errors.push(e);
            }
            if target.is_empty() || !work.get_or_insert_with(|| self.clone()).remove_at(&target) {
                return Err(errors);
            }
            removed.push(target);
        }
    }

    /// Takes out the entry or item at `path`; false if there is none.
    fn remove_at(&mut self, path: &[Seg]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut cur = self;
        for seg in parents {
            let next = match (&mut cur.kind, seg) {
                (NodeKind::Map(m), Seg::Key(k)) => m
                    .iter_mut()
                    .find(|(key, _)| key.key_text() == *k)
                    .map(|(_, v)| v),
                (NodeKind::Seq(items), Seg::Index(i)) => items.get_mut(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => return false,
            }
        }
        match (&mut cur.kind, last) {
            (NodeKind::Map(m), Seg::Key(k)) => {
                match m.iter().position(|(key, _)| key.key_text() == *k) {
                    Some(i) => {
                        m.remove(i);
                        true
                    }
                    None => false,
                }
            }
            (NodeKind::Seq(items), Seg::Index(i)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }
}

/// Whether two mapping keys are the same key (scalars only: a list or a
/// mapping as a key is never taken for another).
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Str(x), NodeKind::Str(y)) => x == y,
        (NodeKind::Int(x), NodeKind::Int(y)) => x == y,
        (NodeKind::Float(x), NodeKind::Float(y)) => x.to_bits() == y.to_bits(),
        (NodeKind::Bool(x), NodeKind::Bool(y)) => x == y,
        (NodeKind::Null, NodeKind::Null) => true,
        _ => false,
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeKind>::deserialize(d)?;
        let span = spanned.defined.span();
        Ok(Node {
            kind: spanned.value,
            pos: Pos {
                line: spanned.defined.line(),
                column: spanned.defined.column(),
            },
            span: (span != serde_saphyr::Span::UNKNOWN).then(|| Span {
                offset: span.offset(),
                len: span.len(),
            }),
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodeKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<NodeKind, E> {
                Ok(NodeKind::Null)
            }
            fn visit_none<E>(self) -> Result<NodeKind, E> {
                Ok(NodeKind::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
                NodeKind::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
                Ok(NodeKind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
                Ok(NodeKind::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
                i64::try_from(v)
                    .map(NodeKind::Int)
                    .or(Ok(NodeKind::Float(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
                Ok(NodeKind::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
                Ok(NodeKind::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
                Ok(NodeKind::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NodeKind, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    items.push(n);
                }
                Ok(NodeKind::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<NodeKind, A::Error> {
                let mut items = Vec::new();
                while let Some(k) = a.next_key::<Node>()? {
                    let v = a.next_value::<Node>()?;
                    items.push((k, v));
                }
                Ok(NodeKind::Map(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// One step from a node to a node below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// The entry of a mapping with this key.
    Key(String),
    /// An item of a list.
    Index(usize),
}

/// An error found while turning a node into a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub pos: Option<Pos>,
    pub message: String,
    /// From the node deserialized to the entry at fault: the key that is
    /// unknown, or whose value is wrong. Empty when the node itself is wrong.
    pub path: Vec<Seg>,
    /// For "missing key" errors: the key (the path leads to the mapping).
    pub missing: Option<String>,
    /// For an unknown key: the known key it is probably a typo of.
    pub suggested: Option<String>,
}

impl NodeError {
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        NodeError {
            pos: Some(pos),
            ..NodeError::new(message)
        }
    }
    fn new(message: impl Into<String>) -> Self {
        NodeError {
            pos: None,
            message: message.into(),
            path: Vec::new(),
            missing: None,
            suggested: None,
        }
    }
    fn or_at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
    /// Records that the error is below `seg` (called from the inside out).
    fn below(mut self, seg: Seg) -> Self {
        self.path.insert(0, seg);
        self
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Unit => "nothing (null)".to_string(),
            other => other.to_string(),
        };
        NodeError::new(format!("expected {}, found {found}", expected_words(exp)))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        NodeError::new(format!("expected {}, found {unexp}", expected_words(exp)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        NodeError {
            suggested: suggest(field, expected.iter().copied()).map(str::to_string),
            ..NodeError::new(unknown_key_message(field, expected))
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!(
            "unknown value `{variant}`, expected one of {}",
            list(expected)
        );
        if let Some(s) = suggest(variant, expected.iter().copied()) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        }
        NodeError::new(message)
    }

    fn missing_field(field: &'static str) -> Self {
        NodeError {
            missing: Some(field.to_string()),
            ..NodeError::new(format!("missing key `{field}`: add `{field}: …`"))
        }
    }
}

/// What serde expects, in the words of a YAML file.
fn expected_words(exp: &dyn de::Expected) -> String {
    let e = exp.to_string();
    match e.as_str() {
        "a sequence" => "a list".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        _ => e,
    }
}

/// "unknown key `pth`, did you mean `path`? (expected one of …)".
pub fn unknown_key_message(key: &str, expected: &[&str]) -> String {
    match suggest(key, expected.iter().copied()) {
        Some(s) => format!(
            "unknown key `{key}`: did you mean `{s}`? (valid keys: {})",
            list(expected)
        ),
        None if expected.is_empty() => format!("unknown key `{key}`: this takes no options"),
        None => format!("unknown key `{key}` (valid keys: {})", list(expected)),
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate by edit distance, when it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of neighbours as one edit (typos like
/// `incldue`), i.e. optimal string alignment.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A serde deserializer reading from a [`Node`].
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a> {
    pub node: &'a Node,
}

impl NodeDeserializer<'_> {
    /// What the node is, with its value when it is a scalar.
    fn found(&self) -> String {
        match &self.node.kind {
            NodeKind::Bool(b) => format!("boolean `{b}`"),
            NodeKind::Int(i) => format!("integer `{i}`"),
            NodeKind::Float(f) => format!("number `{f}`"),
            NodeKind::Str(s) => format!("string \"{s}\""),
            _ => self.node.describe().to_string(),
        }
    }

    fn invalid(&self, exp: &dyn de::Expected) -> NodeError {
        NodeError::at(
            self.node.pos,
            format!("expected {}, found {}", expected_words(exp), self.found()),
        )
    }
}

macro_rules! forward_number {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
            match &self.node.kind {
                // Numbers written as strings, e.g. after `${PORT}` expansion in quotes.
                NodeKind::Str(s) => {
                    if let Ok(i) = s.trim().parse::<i64>() {
                        v.visit_i64(i)
                    } else if let Ok(f) = s.trim().parse::<f64>() {
                        v.visit_f64(f)
                    } else {
                        Err(self.invalid(&v))
                    }
                }
                _ => self.deserialize_any(v),
            }
            .map_err(|e| e.or_at(self.node.pos))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        let pos = self.node.pos;
        match &self.node.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::Float(f) => v.visit_f64(*f),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(SeqNodes {
                iter: items.iter().enumerate(),
            }),
            NodeKind::Map(items) => v.visit_map(MapNodes {
                iter: items.iter(),
                entry: None,
            }),
        }
        .map_err(|e| e.or_at(pos))
    }

    forward_number! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(v)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        // A scalar written without quotes (`port: 9464`, `enabled: true`) is
        // still text when a string is wanted.
        match &self.node.kind {
            NodeKind::Int(i) => v.visit_string(i.to_string()),
            NodeKind::Float(f) => v.visit_string(f.to_string()),
            NodeKind::Bool(b) => v.visit_string(b.to_string()),
            _ => return self.deserialize_any(v),
        }
        .map_err(|e: NodeError| e.or_at(self.node.pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match &self.node.kind {
            NodeKind::Str(s) if s == "true" || s == "false" => v.visit_bool(s == "true"),
            _ => return self.deserialize_any(v),
        }
        .map_err(|e: NodeError| e.or_at(self.node.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self.node.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        let pos = self.node.pos;
        match &self.node.kind {
            NodeKind::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            _ => Err(NodeError::at(
                pos,
                format!("expected one word, found {}", self.node.describe()),
            )),
        }
        .map_err(|e: NodeError| e.or_at(pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        match &self.node.kind {
            NodeKind::Map(_) => self.deserialize_any(v),
            _ => Err(NodeError::at(
                self.node.pos,
                format!(
                    "expected a mapping with the keys {}, found {}",
                    list(fields),
                    self.found()
                ),
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, NodeError> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

struct SeqNodes<'a> {
    iter: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> SeqAccess<'de> for SeqNodes<'_> {
    type Error = NodeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.iter.next() {
            Some((i, node)) => seed
                .deserialize(NodeDeserializer { node })
                .map(Some)
                .map_err(|e| e.or_at(node.pos).below(Seg::Index(i))),
            None => Ok(None),
        }
    }
}

struct MapNodes<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    entry: Option<&'a (Node, Node)>,
}

impl<'de> MapAccess<'de> for MapNodes<'_> {
    type Error = NodeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.iter.next() {
            Some(entry) => {
                self.entry = Some(entry);
                let k = &entry.0;
                seed.deserialize(NodeDeserializer { node: k })
                    .map(Some)
                    .map_err(|e| e.or_at(k.pos).below(Seg::Key(k.key_text())))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        let (k, node) = self.entry.take().expect("value follows key");
        seed.deserialize(NodeDeserializer { node })
            .map_err(|e| e.or_at(node.pos).below(Seg::Key(k.key_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Opts {
        path: String,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn positions_survive_into_typed_errors() {
        let doc = Node::parse("a:\n  path: x\n  cuont: 3\n").unwrap();
        let err = doc.get("a").unwrap().deserialize::<Opts>().unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, column: 3 }));
        assert!(
            err.message.contains("did you mean `count`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_type_names_what_was_found() {
        let doc = Node::parse("path: [1]\n").unwrap();
        let err = doc.deserialize::<Opts>().unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(1));
        assert!(err.message.contains("found a list"), "{}", err.message);
    }

    #[test]
    fn numbers_read_as_strings_when_wanted() {
        let doc = Node::parse("path: 9464\ncount: '7'\n").unwrap();
        let o: Opts = doc.deserialize().unwrap();
        assert_eq!(
            o,
            Opts {
                path: "9464".into(),
                count: 7
            }
        );
    }

    #[test]
    fn yaml_1_1_booleans_stay_text() {
        let doc = Node::parse("a: n\nb: off\nc: true\n").unwrap();
        assert_eq!(doc.get("a").unwrap().as_str(), Some("n"));
        assert_eq!(doc.get("b").unwrap().as_str(), Some("off"));
        assert_eq!(doc.get("c").unwrap().kind, NodeKind::Bool(true));
    }

    #[test]
    fn duplicate_keys_are_reported_in_weirs_words_and_the_first_kept() {
        let text = "a:\n  x: 1\n  y: 2\n  x: 3\nb: [{k: 1, k: 2}]\na: again\n";
        let (doc, dups) = Node::parse_document(text).unwrap();
        let got: Vec<(Option<Pos>, &str, &[Seg])> = dups
            .iter()
            .map(|e| (e.pos, e.message.as_str(), e.path.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some(Pos { line: 4, column: 3 }),
                    "duplicate key `x`: it is already defined at line 2; remove one of the two",
                    &[Seg::Key("a".into())][..]
                ),
                (
                    Some(Pos {
                        line: 5,
                        column: 12
                    }),
                    "duplicate key `k`: it is already defined at line 5; remove one of the two",
                    &[Seg::Key("b".into()), Seg::Index(0)][..]
                ),
                (
                    Some(Pos { line: 6, column: 1 }),
                    "duplicate key `a`: it is already defined at line 1; remove one of the two",
                    &[][..]
                ),
            ]
        );
        let a = doc.get("a").unwrap();
        assert_eq!(a.get("x").unwrap().kind, NodeKind::Int(1));
        assert_eq!(a.as_map().unwrap().len(), 2);
        assert!(
            Node::parse(text)
                .unwrap_err()
                .1
                .starts_with("duplicate key `x`")
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Opts,
        #[serde(default)]
        list: Vec<u32>,
        #[serde(default)]
        flag: bool,
    }

    #[test]
    fn every_error_of_a_value_is_found() {
        let doc = Node::parse(
            "name: [x]\ninner: {path: p, cuont: 1, count: many}\nlist: [1, two, 3, four]\nflag: maybe\nbogus: 1\n",
        )
        .unwrap();
        let errs = doc.deserialize_all::<Outer>().unwrap_err();
        let got: Vec<(u64, &str)> = errs
            .iter()
            .map(|e| (e.pos.unwrap().line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 7, "{got:#?}");
        assert!(got[0].1.contains("found a list"), "{got:#?}");
        assert!(got[1].1.contains("did you mean `count`"), "{got:#?}");
        assert_eq!(
            got[2].1,
            "expected a whole number, 0 or more, found string \"many\""
        );
        assert!(got[3].1.contains("\"two\""), "{got:#?}");
        assert!(got[4].1.contains("\"four\""), "{got:#?}");
        assert_eq!(got[5].0, 4, "{got:#?}");
        assert!(got[6].1.starts_with("unknown key `bogus`"), "{got:#?}");
        // No "missing key" for the keys taken out because they were wrong.
        assert!(!got.iter().any(|(_, m)| m.contains("missing")), "{got:#?}");
    }

    #[test]
    fn a_key_really_missing_is_reported_beside_the_other_errors() {
        let doc = Node::parse("inner: {count: x}\nflag: 3\n").unwrap();
        let errs = doc.deserialize_all::<Outer>().unwrap_err();
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert_eq!(
            msgs[0],
            "expected a whole number, 0 or more, found string \"x\""
        );
        assert_eq!(msgs[1], "missing key `path`: add `path: …`");
        assert!(msgs[2].contains("found integer `3`"), "{msgs:#?}");
        assert_eq!(msgs[3], "missing key `name`: add `name: …`");
        assert!(
            Node::parse("name: n\ninner: {path: p}\n")
                .unwrap()
                .deserialize_all::<Outer>()
                .is_ok()
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(suggest("incldue", ["include", "exclude"]), Some("include"));
        assert_eq!(suggest("zzz", ["include", "exclude"]), None);
    }
}
