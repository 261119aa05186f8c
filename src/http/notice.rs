//! The admin page's one-shot notice ("User bob was created."). It travels in
//! a short-lived cookie the server sets on the redirect and clears on the
//! next `/admin` page, never in the URL: a link anyone can craft must not put
//! trusted-looking text on the page. The cookie holds a code and a username,
//! and the text comes from fixed templates.

use hyper::header::HeaderMap;

use super::request::cookie;
use crate::domain::Username;

/// The cookie that carries a notice across the redirect, as `code:username`.
pub const COOKIE_NAME: &str = "chatctl_notice";

/// Long enough for the redirect to be followed, short enough that a notice
/// never outlives the page it belongs to.
const LIFETIME_SECONDS: u32 = 60;

/// What an admin action did, shown once on the page it redirects to.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// An account was created from the admin page.
    Created(Username),
    /// An account was activated again.
    Activated(Username),
    /// An account was deactivated (its sessions ended).
    Deactivated(Username),
}

impl Notice {
    /// The notice in the request's cookie, if it is one the server writes.
    pub fn from_headers(headers: &HeaderMap) -> Option<Notice> {
        let (code, name) = cookie(headers, COOKIE_NAME)?.split_once(':')?;
        let name = Username::parse(name).ok()?;
        match code {
            "created" => Some(Notice::Created(name)),
            "activated" => Some(Notice::Activated(name)),
            "deactivated" => Some(Notice::Deactivated(name)),
            _ => None,
        }
    }

    /// The sentence shown on the page (plain text: the page escapes it).
    pub fn text(&self) -> String {
        let (name, verb) = self.parts();
        format!("User {} was {verb}.", name.as_str())
    }

    /// The `Set-Cookie` value that carries this notice to the next page.
    pub fn cookie(&self, secure: bool) -> String {
        let (name, code) = self.parts();
        format!("{COOKIE_NAME}={code}:{}; {}; Max-Age={LIFETIME_SECONDS}", name.as_str(), attributes(secure))
    }

    fn parts(&self) -> (&Username, &'static str) {
        match self {
            Notice::Created(name) => (name, "created"),
            Notice::Activated(name) => (name, "activated"),
            Notice::Deactivated(name) => (name, "deactivated"),
        }
    }
}

/// The `Set-Cookie` value that removes a shown (or unreadable) notice.
pub fn cleared_cookie(secure: bool) -> String {
    format!("{COOKIE_NAME}=; {}; Max-Age=0", attributes(secure))
}

fn attributes(secure: bool) -> String {
    format!("HttpOnly; SameSite=Lax; Path=/admin{}", if secure { "; Secure" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, COOKIE};

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn a_notice_survives_its_own_cookie() {
        let notice = Notice::Deactivated(Username::parse("bob.smith@example").unwrap());
        let set_cookie = notice.cookie(false);
        let value = set_cookie.split(';').next().unwrap();
        assert_eq!(Notice::from_headers(&headers(value)), Some(notice));
        assert!(set_cookie.contains("HttpOnly; SameSite=Lax; Path=/admin"), "{set_cookie}");
        assert!(Notice::Created(Username::parse("a").unwrap()).cookie(true).contains("; Secure"));
    }

    #[test]
    fn only_known_codes_and_valid_names_are_shown() {
        assert_eq!(Notice::from_headers(&headers("chatctl_notice=hacked:bob")), None);
        assert_eq!(Notice::from_headers(&headers("chatctl_notice=created:<b>")), None);
        assert_eq!(Notice::from_headers(&headers("chatctl_notice=created")), None);
        assert_eq!(Notice::from_headers(&HeaderMap::new()), None);
    }
}
