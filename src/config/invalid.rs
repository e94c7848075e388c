//! One problem in a component's settings: where it is, as a key path below
//! the component (`["rules", "3", "labels"]`), and what to do about it.
//!
//! Every check of a component's settings (globs, decoders, metric rules,
//! sink options) returns this one type; a check that reads a part of the
//! settings reports relative to that part, and the caller places it with
//! [`Invalid::under`]. The config module turns it into a located
//! `file:line:column: component: message`.

/// A problem with the setting at `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Keys and list indices from the component (or from the part that was
    /// checked) down to the setting at fault; empty for the whole.
    pub path: Vec<String>,
    pub message: String,
}

impl Invalid {
    /// A problem with the setting at `path`.
    pub fn at<P: AsRef<str>>(path: &[P], message: impl Into<String>) -> Invalid {
        Invalid {
            path: path.iter().map(|p| p.as_ref().to_string()).collect(),
            message: message.into(),
        }
    }

    /// The same problem seen from one level up: a rule's error becomes
    /// `e.under(3).under("rules")`.
    pub fn under(mut self, key: impl ToString) -> Invalid {
        self.path.insert(0, key.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_prepends() {
        let e = Invalid::at(&["labels"], "bad").under(3).under("rules");
        assert_eq!(e.path, ["rules", "3", "labels"]);
    }
}
