//! Keeping credentials out of what weir prints: the password in a URL's user
//! info, and query parameters that carry a token or a signature.
//!
//! `http://user:pass@host/x?access_token=abc` becomes
//! `http://user:***@host/x?access_token=***`. The user name stays, as in
//! Prometheus' and Go's URL redaction: it tells which account is meant and is
//! not the secret. Anything that is not `scheme://…` is returned unchanged.

use std::borrow::Cow;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query keys (compared without case) whose values are secrets: DingTalk's
/// `access_token` and `sign`, and the usual API key spellings.
const SECRET_QUERY_KEYS: &[&str] = &[
    "access_token",
    "token",
    "key",
    "sign",
    "signature",
    "secret",
    "client_secret",
    "password",
    "apikey",
    "api_key",
    "api-key",
];

/// `url` with the password of its user info and the values of secret query
/// parameters replaced by `***`. Borrowed when there is nothing to hide.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(authority_start) = scheme_end(url) else {
        return Cow::Borrowed(url);
    };
    let rest = &url[authority_start..];
    // The authority ends at the first `/`, `?` or `#`; an `@` after that is
    // part of the path, query or fragment.
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let mut out = String::new();
    // The user info ends at the last `@` of the authority (an unescaped `@`
    // in a password is common enough to honour).
    if let Some(at) = authority.rfind('@')
        && let Some(colon) = authority[..at].find(':')
    {
        out.reserve(url.len());
        out.push_str(&url[..authority_start + colon + 1]);
        out.push_str(MASK);
        out.push_str(&url[authority_start + at..authority_start + authority_len]);
    }
    let after_authority = authority_start + authority_len;
    let tail = &url[after_authority..];
    match redact_query(tail) {
        Some(t) => {
            if out.is_empty() {
                out.push_str(&url[..after_authority]);
            }
            out.push_str(&t);
            Cow::Owned(out)
        }
        None if out.is_empty() => Cow::Borrowed(url),
        None => {
            out.push_str(tail);
            Cow::Owned(out)
        }
    }
}

/// Every `scheme://…` URL in `text` passed through [`redact_url`]. A URL
/// ends at white space, a quote, a backtick or `<>`.
pub fn redact_urls_in(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut done = 0; // bytes of `text` already copied to `out`
    let mut search = 0;
    let mut changed = false;
    while let Some(found) = text[search..].find("://") {
        let sep = search + found;
        let start = text[..sep]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+.-".contains(*c))
            .last()
            .map_or(sep, |(i, _)| i);
        let end = text[sep..]
            .find(|c: char| c.is_whitespace() || "`\"'<>".contains(c))
            .map_or(text.len(), |i| sep + i);
        if start < done || start == sep {
            search = sep + 3;
            continue;
        }
        let token = &text[start..end];
        let redacted = redact_url(token);
        if let Cow::Owned(r) = redacted {
            out.push_str(&text[done..start]);
            out.push_str(&r);
            done = end;
            changed = true;
        }
        search = end.max(sep + 3);
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

/// The byte index after `scheme://`, when `url` starts with a scheme.
fn scheme_end(url: &str) -> Option<usize> {
    let colon = url.find("://")?;
    let scheme = &url[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)))
        .then_some(colon + 3)
}

/// `tail` is what follows the authority (`/path?query#fragment`); the query
/// with secret values masked, or `None` when nothing changes.
fn redact_query(tail: &str) -> Option<String> {
    let q = tail
        .find(['?', '#'])
        .filter(|&i| tail.as_bytes()[i] == b'?')?;
    let query_end = tail[q..].find('#').map_or(tail.len(), |i| q + i);
    let query = &tail[q + 1..query_end];
    let mut changed = false;
    let pairs: Vec<Cow<str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && is_secret_key(k) => {
                changed = true;
                Cow::Owned(format!("{k}={MASK}"))
            }
            _ => Cow::Borrowed(pair),
        })
        .collect();
    changed.then(|| format!("{}?{}{}", &tail[..q], pairs.join("&"), &tail[query_end..]))
}

fn is_secret_key(key: &str) -> bool {
    SECRET_QUERY_KEYS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(key))
}

/// An HTTP client error with its causes, with any URL it quotes redacted.
pub fn error(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c.to_string());
        cause = c.source();
    }
    redact_urls_in(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(u: &str) -> String {
        redact_url(u).into_owned()
    }

    #[test]
    fn password_is_masked_and_user_kept() {
        assert_eq!(r("http://user:pass@host"), "http://user:***@host");
        assert_eq!(
            r("https://admin:s3cr3t@loki.example:3100/loki/api/v1/push"),
            "https://admin:***@loki.example:3100/loki/api/v1/push"
        );
        // An empty password is still a password field.
        assert_eq!(r("http://user:@host/"), "http://user:***@host/");
        // A raw `@` in the password: the user info ends at the last `@`.
        assert_eq!(r("http://u:p@ss@host/x"), "http://u:***@host/x");
        // A password containing `:`.
        assert_eq!(r("http://u:a:b@host"), "http://u:***@host");
    }

    #[test]
    fn nothing_to_hide_is_borrowed() {
        for u in [
            "http://host:3100/loki/api/v1/push",
            "http://[::1]:9200",
            "https://[2001:db8::1]/x?level=info",
            "http://user@host/x",
            "http://host/path@x",
            "http://host/p?to=a@b.c",
            "http://host/p#frag:x@y",
            "http://host/p#a?token=x",
            "not a url",
            "user:pass@host",
            "",
        ] {
            assert!(
                matches!(redact_url(u), Cow::Borrowed(_)),
                "{u} -> {}",
                redact_url(u)
            );
        }
    }

    #[test]
    fn ipv6_hosts_with_user_info() {
        assert_eq!(r("http://u:p@[::1]:3100/x"), "http://u:***@[::1]:3100/x");
        assert_eq!(r("http://u@[::1]:3100/x"), "http://u@[::1]:3100/x");
    }

    #[test]
    fn at_sign_after_the_authority_is_not_user_info() {
        assert_eq!(r("http://host/a:b@c"), "http://host/a:b@c");
        assert_eq!(r("http://host?x=a:b@c"), "http://host?x=a:b@c");
        assert_eq!(r("http://u:p@host/a:b@c"), "http://u:***@host/a:b@c");
    }

    #[test]
    fn secret_query_values_are_masked() {
        assert_eq!(
            r("https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=17&sign=xyz%3D"),
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=17&sign=***"
        );
        assert_eq!(
            r("http://h/x?API_KEY=k&Token=t&page=2#top"),
            "http://h/x?API_KEY=***&Token=***&page=2#top"
        );
        assert_eq!(
            r("http://u:p@h/?password=p&key="),
            "http://u:***@h/?password=***&key="
        );
        assert_eq!(r("http://h?secret=s"), "http://h?secret=***");
        // Keys that merely contain a secret word are not secrets.
        assert_eq!(
            r("http://h/?monkey=1&tokens=2"),
            "http://h/?monkey=1&tokens=2"
        );
    }

    #[test]
    fn urls_inside_text() {
        assert_eq!(
            redact_urls_in("`http://u:p@h:1/x` is not an http(s) URL, e.g. http://127.0.0.1:3100"),
            "`http://u:***@h:1/x` is not an http(s) URL, e.g. http://127.0.0.1:3100"
        );
        assert_eq!(
            redact_urls_in("to https://a:b@x and \"ftp://c:d@y\" done"),
            "to https://a:***@x and \"ftp://c:***@y\" done"
        );
        assert!(matches!(
            redact_urls_in("http://h/ and :// alone"),
            Cow::Borrowed(_)
        ));
        assert_eq!(redact_urls_in("end http://u:p@h"), "end http://u:***@h");
    }
}
