//! One-shot notices after a redirect: the admin page's ("User bob was
//! created.") and the sign-in page's ("You have signed out."). A notice
//! travels in a short-lived cookie the server sets on the redirect and
//! clears on the page that shows it, never in the URL: a link anyone can
//! craft must not put trusted-looking text on the page. The cookie holds a
//! code (and a username), and the text comes from fixed templates; each
//! page shows only its own kinds.

use hyper::header::HeaderMap;

use super::request::cookie;
use crate::domain::Username;

/// The cookie that carries a notice across the redirect, as `code:username`.
pub const COOKIE_NAME: &str = "chatctl_notice";

/// Long enough for the redirect to be followed, short enough that a notice
/// never outlives the page it belongs to.
const LIFETIME_SECONDS: u32 = 60;

/// What an action did, shown once on the page it redirects to.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// An account was created from the admin page.
    Created(Username),
    /// An account was activated again.
    Activated(Username),
    /// An account was deactivated (its sessions ended).
    Deactivated(Username),
    /// An administrator set a new password for the account (its sessions ended).
    PasswordSet(Username),
    /// The person signed out (shown on the sign-in page).
    SignedOut,
}

/// The page a notice is shown on; its cookie's `Path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `/admin`.
    Admin,
    /// `/login`.
    Login,
}

impl Place {
    fn path(self) -> &'static str {
        match self {
            Place::Admin => "/admin",
            Place::Login => "/login",
        }
    }
}

impl Notice {
    /// The notice in the request's cookie, if it is one the server writes
    /// for the page at `place`.
    pub fn from_headers(headers: &HeaderMap, place: Place) -> Option<Notice> {
        let value = cookie(headers, COOKIE_NAME)?;
        let notice = match value.split_once(':') {
            None if value == "signed_out" => Notice::SignedOut,
            None => return None,
            Some((code, name)) => {
                let name = Username::parse(name).ok()?;
                match code {
                    "created" => Notice::Created(name),
                    "activated" => Notice::Activated(name),
                    "deactivated" => Notice::Deactivated(name),
                    "password_set" => Notice::PasswordSet(name),
                    _ => return None,
                }
            }
        };
        (notice.place() == place).then_some(notice)
    }

    /// The sentence shown on the page (plain text: the page escapes it).
    pub fn text(&self) -> String {
        match self {
            Notice::Created(name) => format!("User {} was created.", name.as_str()),
            Notice::Activated(name) => format!("User {} was activated.", name.as_str()),
            Notice::Deactivated(name) => format!("User {} was deactivated.", name.as_str()),
            Notice::PasswordSet(name) => {
                format!("The password of {} was changed; all of their sessions were signed out.", name.as_str())
            }
            Notice::SignedOut => "You have signed out.".to_owned(),
        }
    }

    /// The `Set-Cookie` value that carries this notice to the next page.
    pub fn cookie(&self, secure: bool) -> String {
        let value = match self {
            Notice::Created(name) => format!("created:{}", name.as_str()),
            Notice::Activated(name) => format!("activated:{}", name.as_str()),
            Notice::Deactivated(name) => format!("deactivated:{}", name.as_str()),
            Notice::PasswordSet(name) => format!("password_set:{}", name.as_str()),
            Notice::SignedOut => "signed_out".to_owned(),
        };
        format!("{COOKIE_NAME}={value}; {}; Max-Age={LIFETIME_SECONDS}", attributes(self.place(), secure))
    }

    /// The page this notice is shown on.
    pub fn place(&self) -> Place {
        match self {
            Notice::SignedOut => Place::Login,
            _ => Place::Admin,
        }
    }
}

/// The `Set-Cookie` value that removes a shown (or unreadable) notice from `place`.
pub fn cleared_cookie(place: Place, secure: bool) -> String {
    format!("{COOKIE_NAME}=; {}; Max-Age=0", attributes(place, secure))
}

fn attributes(place: Place, secure: bool) -> String {
    format!("HttpOnly; SameSite=Lax; Path={}{}", place.path(), if secure { "; Secure" } else { "" })
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
        assert_eq!(Notice::from_headers(&headers(value), Place::Admin), Some(notice));
        assert!(set_cookie.contains("HttpOnly; SameSite=Lax; Path=/admin"), "{set_cookie}");
        assert!(Notice::Created(Username::parse("a").unwrap()).cookie(true).contains("; Secure"));
        let signed_out = Notice::SignedOut.cookie(false);
        assert!(signed_out.contains("Path=/login"), "{signed_out}");
        let value = signed_out.split(';').next().unwrap();
        assert_eq!(Notice::from_headers(&headers(value), Place::Login), Some(Notice::SignedOut));
        assert_eq!(Notice::from_headers(&headers(value), Place::Admin), None, "each page shows only its own");
        let set = Notice::PasswordSet(Username::parse("bob").unwrap());
        let value = set.cookie(false);
        assert_eq!(Notice::from_headers(&headers(value.split(';').next().unwrap()), Place::Admin), Some(set));
    }

    #[test]
    fn only_known_codes_and_valid_names_are_shown() {
        for forged in ["hacked:bob", "created:<b>", "created", "signed_out:bob", ""] {
            let cookie = format!("chatctl_notice={forged}");
            for place in [Place::Admin, Place::Login] {
                assert_eq!(Notice::from_headers(&headers(&cookie), place), None, "{forged}");
            }
        }
        assert_eq!(Notice::from_headers(&HeaderMap::new(), Place::Admin), None);
    }
}
