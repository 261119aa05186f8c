//! The embedded pages and static files from `assets/`, compiled into the
//! binary. Pages are filled by replacing `{{name}}` with HTML-escaped values.

use std::sync::OnceLock;

use super::respond::escape_html;

/// The HTML pages compiled into the binary, each from its file in `assets/`.
#[derive(Clone, Copy)]
pub enum Page {
    /// The sign-in form.
    Login,
    /// The first-run form that creates the first superuser.
    Setup,
    /// The list of the user's conversations.
    Lobby,
    /// A room or direct chat.
    Room,
    /// Account administration, for superusers.
    Admin,
    /// The signed-in top bar, a part of every signed-in page.
    Topbar,
    /// The signed-in person's account: the password change form.
    Account,
    /// An error page under the signed-in top bar.
    Error,
}

impl Page {
    fn source(self) -> &'static str {
        match self {
            Page::Login => include_str!("../../assets/login.html"),
            Page::Setup => include_str!("../../assets/setup.html"),
            Page::Lobby => include_str!("../../assets/lobby.html"),
            Page::Room => include_str!("../../assets/room.html"),
            Page::Admin => include_str!("../../assets/admin.html"),
            Page::Topbar => include_str!("../../assets/topbar.html"),
            Page::Account => include_str!("../../assets/account.html"),
            Page::Error => include_str!("../../assets/error.html"),
        }
    }
}

/// Fills every `{{name}}` with the escaped value; unknown names become empty.
pub fn render(page: Page, values: &[(&str, &str)]) -> String {
    render_with_raw(page, values, &[])
}

/// As `render`, plus `raw` values inserted unescaped: only for HTML the
/// caller built from escaped parts.
pub fn render_with_raw(page: Page, values: &[(&str, &str)], raw: &[(&str, &str)]) -> String {
    let source = page.source();
    let mut out = String::with_capacity(source.len() + 256);
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        if let Some((_, value)) = raw.iter().find(|(key, _)| *key == name) {
            out.push_str(value);
        } else if let Some((_, value)) = values.iter().find(|(key, _)| *key == name) {
            out.push_str(&escape_html(value));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A file served under `/static/`.
pub struct StaticFile {
    /// The file as compiled in.
    pub bytes: &'static [u8],
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// A strong validator from the content, so browsers revalidate cheaply.
    pub etag: String,
}

/// The static file of this name, or `None` (404); only files compiled in are served.
pub fn static_file(name: &str) -> Option<&'static StaticFile> {
    static FILES: OnceLock<Vec<(&'static str, StaticFile)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let file = |bytes: &'static [u8], content_type| {
            let digest = crate::auth::session::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)[..12]);
            StaticFile { bytes, content_type, etag: format!("\"{digest}\"") }
        };
        vec![
            ("app.css", file(include_bytes!("../../assets/app.css"), "text/css; charset=utf-8")),
            ("chat.js", file(include_bytes!("../../assets/chat.js"), "text/javascript; charset=utf-8")),
            ("lobby.js", file(include_bytes!("../../assets/lobby.js"), "text/javascript; charset=utf-8")),
            ("util.js", file(include_bytes!("../../assets/util.js"), "text/javascript; charset=utf-8")),
            ("inbox.js", file(include_bytes!("../../assets/inbox.js"), "text/javascript; charset=utf-8")),
            ("sidebar.js", file(include_bytes!("../../assets/sidebar.js"), "text/javascript; charset=utf-8")),
            ("conversation.js", file(include_bytes!("../../assets/conversation.js"), "text/javascript; charset=utf-8")),
            ("connection.js", file(include_bytes!("../../assets/connection.js"), "text/javascript; charset=utf-8")),
            (
                "message-actions.js",
                file(include_bytes!("../../assets/message-actions.js"), "text/javascript; charset=utf-8"),
            ),
            ("account.js", file(include_bytes!("../../assets/account.js"), "text/javascript; charset=utf-8")),
            ("favicon.svg", file(include_bytes!("../../assets/favicon.svg"), "image/svg+xml")),
        ]
    });
    files.iter().find(|(file, _)| *file == name).map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_every_placeholder_is_filled() {
        let html =
            render(Page::Login, &[("csrf_token", "tok"), ("next", "/chat/x"), ("username", "<b>"), ("error", "")]);
        assert!(html.contains("value=\"tok\""));
        assert!(html.contains("&lt;b&gt;"));
        assert!(!html.contains("{{"));
        for page in [Page::Setup, Page::Lobby, Page::Room, Page::Admin, Page::Topbar, Page::Account, Page::Error] {
            assert!(!render(page, &[]).contains("{{"));
        }
    }

    #[test]
    fn every_static_file_is_embedded() {
        for name in [
            "app.css",
            "chat.js",
            "lobby.js",
            "util.js",
            "inbox.js",
            "sidebar.js",
            "conversation.js",
            "connection.js",
            "message-actions.js",
            "account.js",
            "favicon.svg",
        ] {
            assert!(!static_file(name).unwrap().bytes.is_empty(), "{name}");
        }
        assert!(static_file("../Cargo.toml").is_none());
    }
}
