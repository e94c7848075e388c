//! Keeping secrets out of what weir prints: URLs with credentials in them,
//! and HTTP client errors that quote such URLs.

use std::borrow::Cow;

/// `url` with the password of its user info replaced by `***`.
pub fn url(url: &str) -> Cow<'_, str> {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            Cow::Owned(u.to_string())
        }
        _ => Cow::Borrowed(url),
    }
}

/// An HTTP client error with its causes, without the request's URL.
pub fn error(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
        cause = c.source();
    }
    // reqwest writes "... for url (URL)"; the URL may carry a password.
    match e.url() {
        Some(u) => text.replace(u.as_str(), &self::url(u.as_str())),
        None => text,
    }
}
