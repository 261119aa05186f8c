//! The embedded client in a real browser. Two Chromiums (separate cookie
//! jars) sign in through the login page, chat live in one room, see markup
//! as plain text and links as links, and get the history back after a
//! reload. Three (alice, bob, carol) then use the chat app of PROTOCOL.md
//! "The chat app": bob's sidebar counts unread messages of another room and
//! shows a new direct conversation live (with a desktop notification while
//! his tab is hidden), alice sees bob typing, alice's edit
//! and delete reach bob's page, and a password change elsewhere signs bob's
//! browser out. Screenshots (desktop 1280×800 and phone
//! 390×844) land in `target/browser-screenshots/` for a human to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`apt-get install chromium chromium-driver`); without them the test skips
//! loudly, or fails when `CHATCTL_REQUIRE_BROWSER=1`.

mod browser_support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use browser_support::webdriver::{ChromeDriver, Session};
use chatctl::config::ServerConfig;
use chatctl::storage::{now_ms, SchemaCheck, Store, UserRecord};
use serde_json::Value;

/// WebDriver's key codes for Enter and the Up arrow.
const ENTER: &str = "\u{E007}";
const ARROW_UP: &str = "\u{E013}";
/// How long anything the user would wait for may take.
const PATIENCE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery staple";
const SCRIPT_TEXT: &str = "<script>alert(1)</script>";
/// A link among words, and a `javascript:` address that must stay text.
const LINK_TEXT: &str = "see https://example.com/a?b=1, not javascript:alert(1)";

/// One browser test at a time: each starts several Chromiums, and two cores
/// running five of them at once would make every patience timeout flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_sign_in_chat_live_see_markup_as_text_and_reload_history() -> anyhow::Result<()> {
    if !browser_support::browser_available() {
        return Ok(());
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let data = tempfile::tempdir()?;
    create_users(data.path(), &["alice", "bob"]).await?;
    let mut config = ServerConfig::ephemeral(data.path());
    config.message_rate = 0; // the long room is filled faster than a person types
    let server = chatctl::startup::start(config).await?;
    let base = server.url();
    let room = format!("{base}/chat/lobby");
    let shots = screenshots_dir()?;

    let driver = ChromeDriver::start().await?;
    let alice = driver.new_session().await?;
    let bob = driver.new_session().await?;

    // 1. Signed out, the room sends each browser to the login page and back.
    alice.goto(&room).await?;
    wait_for_login_page(&alice, &base).await?;
    alice.screenshot(&shots.join("01-login.png")).await?;
    sign_in(&alice, &base, "alice").await?;
    bob.goto(&room).await?;
    wait_for_login_page(&bob, &base).await?;
    sign_in(&bob, &base, "bob").await?;
    for (who, session) in [("alice", &alice), ("bob", &bob)] {
        let url = session.current_url().await?;
        ensure!(url == room, "{who} should land on the room after signing in, is at {url}");
    }

    // 2 and 3. Both online; each message reaches both browsers, in one order.
    wait_online(&alice).await?;
    wait_online(&bob).await?;
    send(&alice, "hello from alice").await?;
    let first = [("alice", "hello from alice")];
    wait_for_messages(&bob, &first).await?;
    send(&bob, "hello from bob").await?;
    let both = [("alice", "hello from alice"), ("bob", "hello from bob")];
    wait_for_messages(&alice, &both).await?;
    wait_for_messages(&bob, &both).await?;

    // 4. Markup in a message is text, never code.
    send(&alice, SCRIPT_TEXT).await?;
    let all = [("alice", "hello from alice"), ("bob", "hello from bob"), ("alice", SCRIPT_TEXT)];
    for (who, session) in [("alice", &alice), ("bob", &bob)] {
        wait_for_messages(session, &all).await?;
        assert_shown_as_text(who, session).await?;
    }
    alice.screenshot(&shots.join("02-alice-room.png")).await?;

    // Links in message text are links (http and https only), opening elsewhere.
    send(&bob, LINK_TEXT).await?;
    let all = [("alice", "hello from alice"), ("bob", "hello from bob"), ("alice", SCRIPT_TEXT), ("bob", LINK_TEXT)];
    wait_for_messages(&alice, &all).await?;
    let links = alice
        .execute(
            "return Array.from(document.querySelectorAll('#messages > li.msg:last-child .text a'), \
             (a) => [a.getAttribute('href'), a.target, a.rel, a.textContent]);",
        )
        .await?;
    ensure!(
        links
            == serde_json::json!([[
                "https://example.com/a?b=1",
                "_blank",
                "noopener noreferrer",
                "https://example.com/a?b=1"
            ]]),
        "the link message should hold exactly one https link, is {links}"
    );

    // 5. A reload rebuilds the conversation from history.
    bob.refresh().await?;
    wait_online(&bob).await?;
    wait_for_messages(&bob, &all).await?;
    let scripts = bob.execute("return document.querySelectorAll('#messages script').length").await?;
    ensure!(scripts == 0, "bob after reload: #messages holds {scripts} <script> elements");
    bob.screenshot(&shots.join("03-bob-room-after-reload.png")).await?;

    // Older messages load as the user scrolls up, keeping what they looked at in place.
    post_messages(&base, "alice", "long", LONG_ROOM_MESSAGES).await?;
    bob.goto(&format!("{base}/chat/long")).await?;
    wait_online(&bob).await?;
    scroll_back_through_history(&bob).await?;
    bob.screenshot(&shots.join("03b-bob-scrolled-back.png")).await?;
    bob.goto(&room).await?;
    wait_online(&bob).await?;

    // 6. The lobby lists the room with its latest message.
    alice.goto(&format!("{base}/")).await?;
    wait_for_lobby(&alice).await?;
    alice.screenshot(&shots.join("04-lobby.png")).await?;

    // Phone-sized views of the room and the lobby.
    bob.set_window_size(390, 844).await?;
    wait_for_narrow_viewport(&bob).await?;
    wait_for_messages(&bob, &all).await?;
    bob.screenshot(&shots.join("05-phone-room.png")).await?;
    alice.set_window_size(390, 844).await?;
    wait_for_narrow_viewport(&alice).await?;
    alice.screenshot(&shots.join("06-phone-lobby.png")).await?;

    for (who, session) in [("alice", &alice), ("bob", &bob)] {
        assert_no_console_errors(who, session).await?;
    }
    alice.quit().await?;
    bob.quit().await?;
    drop(driver);
    server.shutdown().await;
    eprintln!("browser test screenshots: {}", shots.display());
    Ok(())
}

/// PROTOCOL.md "The chat app" through the client: alice, bob and carol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_sidebar_unread_direct_typing_edit_and_delete_live() -> anyhow::Result<()> {
    if !browser_support::browser_available() {
        return Ok(());
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let data = tempfile::tempdir()?;
    // carol is a superuser: she may delete anyone's message.
    create_accounts(data.path(), &[("alice", false), ("bob", false), ("carol", true)]).await?;
    let server = chatctl::startup::start(ServerConfig::ephemeral(data.path())).await?;
    let base = server.url();
    let room_x = format!("{base}/chat/xroom");
    let room_y = format!("{base}/chat/yroom");
    let shots = screenshots_dir()?;

    let driver = ChromeDriver::start().await?;
    let alice = driver.new_session().await?;
    let bob = driver.new_session().await?;
    let carol = driver.new_session().await?;
    for (name, session) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        session.set_window_size(1280, 800).await?;
        session.goto(&format!("{base}/login?next=/chat/yroom")).await?;
        session.find("#login-button").await?;
        sign_in(session, &base, name).await?;
        wait_online(session).await?;
    }

    // Everyone is a member of room Y; alice and bob of room X, where bob sits.
    // bob has read room Y (the server has his marker) before he leaves it.
    send(&carol, "first in y").await?;
    wait_for_messages(&bob, &[("carol", "first in y")]).await?;
    wait_until_read(&bob, "yroom").await?;
    bob.goto(&room_x).await?;
    wait_online(&bob).await?;
    alice.goto(&room_x).await?;
    wait_online(&alice).await?;
    wait_for_sidebar(&bob, &["yroom", "xroom"]).await?;
    // alice, already online, joined room X: bob's header counts her.
    poll("bob's header to count two people online in room X", || async {
        let text = bob.find("#presence").await?.text().await?;
        Ok(if text == "2 online" { Ok(()) } else { Err(format!("{text:?}")) })
    })
    .await?;

    // 1. Messages in room Y raise bob's unread count there, live.
    send(&carol, "second in y").await?;
    wait_for_unread(&bob, "yroom", 1).await?;
    send(&carol, "third in y, @bob look").await?;
    wait_for_unread(&bob, "yroom", 2).await?;
    wait_for_title(&bob, "(2) #xroom · chatctl").await?;

    // 2. A direct message from alice appears in bob's sidebar, unread.
    alice.goto(&format!("{base}/direct/bob")).await?;
    wait_online(&alice).await?;
    wait_for_peer_presence(&alice, true).await?;
    // bob allows notifications (as if he clicked the browser's prompt) and
    // looks at another tab: the direct message raises a notification.
    bob.set_permission("notifications", "granted").await?;
    bob.refresh().await?;
    wait_online(&bob).await?;
    let enabled = bob.execute("return document.getElementById('notify-button').hidden").await?;
    ensure!(enabled == true, "with permission granted, the Enable notifications button should be gone");
    bob.execute(SPY_ON_NOTIFICATIONS).await?;
    let chat_tab = bob.window_handle().await?;
    bob.new_tab().await?;
    bob.goto(&format!("{base}/")).await?; // same origin: it can read what the spy stores
    send(&alice, "psst, bob").await?;
    poll("bob's hidden chat tab to raise a notification", || async {
        let shown = bob.execute("return localStorage.getItem('spy-notifications')").await?;
        let expected = serde_json::json!([["alice", "psst, bob"]]).to_string();
        Ok(if shown.as_str() == Some(expected.as_str()) { Ok(()) } else { Err(format!("{shown}")) })
    })
    .await?;
    bob.close_tab().await?;
    bob.switch_to(&chat_tab).await?;
    let visibility = bob.execute("return window.__visibility").await?;
    ensure!(visibility[0] == "hidden", "bob's chat tab should have been hidden, went {visibility}");
    wait_for_sidebar(&bob, &["dm:alice:bob", "yroom", "xroom"]).await?;
    wait_for_unread(&bob, "dm:alice:bob", 1).await?;
    wait_for_title(&bob, "(3) #xroom · chatctl").await?;
    poll("bob's favicon to carry the unread badge", || async {
        let href = bob.execute("return document.querySelector('link[rel=icon]').href.slice(0, 22)").await?;
        Ok(if href == "data:image/png;base64," { Ok(()) } else { Err(href.to_string()) })
    })
    .await?;
    bob.screenshot(&shots.join("10-desktop-sidebar-unread.png")).await?;

    // 3. bob types in room X; alice, there too, sees it.
    alice.goto(&room_x).await?;
    wait_online(&alice).await?;
    bob.find("#message-input").await?.send_keys("typing something").await?;
    poll("alice to see bob typing", || async {
        let text = alice.find("#typing").await?.text().await?;
        Ok(if text == "bob is typing…" { Ok(()) } else { Err(format!("#typing reads {text:?}")) })
    })
    .await?;
    alice.screenshot(&shots.join("11-desktop-typing.png")).await?;
    bob.find("#message-input").await?.clear().await?;

    // 4. alice edits her message (Up arrow in the empty box) and bob sees it.
    send(&alice, "to be edited").await?;
    wait_for_messages(&alice, &[("alice", "to be edited")]).await?;
    wait_for_messages(&bob, &[("alice", "to be edited")]).await?;
    // bob is looking at room X: the client marks alice's message read.
    wait_until_read(&bob, "xroom").await?;
    let input = alice.find("#message-input").await?;
    input.send_keys(ARROW_UP).await?;
    poll("alice's box to hold her last message for editing", || async {
        let value = input.property("value").await?;
        Ok(if value == "to be edited" { Ok(()) } else { Err(format!("box holds {value}")) })
    })
    .await?;
    alice.screenshot(&shots.join("11b-desktop-editing.png")).await?;
    input.clear().await?;
    send(&alice, "edited text").await?;
    wait_for_messages(&bob, &[("alice", "edited text")]).await?;
    poll("bob to see the (edited) mark", || async {
        let marks = bob.execute("return document.querySelectorAll('#messages .edited').length").await?;
        Ok(if marks == 1 { Ok(()) } else { Err(format!("{marks} marks")) })
    })
    .await?;
    bob.screenshot(&shots.join("12-desktop-edited.png")).await?;

    // 5. alice deletes it from the message menu; it disappears for bob.
    send(&alice, "to be deleted").await?;
    wait_for_messages(&alice, &[("alice", "edited text"), ("alice", "to be deleted")]).await?;
    wait_for_messages(&bob, &[("alice", "edited text"), ("alice", "to be deleted")]).await?;
    alice.find("#messages > li.msg:last-child .bubble").await?.click().await?;
    alice.find("#messages > li.msg:last-child .msg-menu-btn").await?.click().await?;
    alice.find("#msg-menu [data-action=delete]").await?.click().await?;
    alice.screenshot(&shots.join("13-desktop-confirm-delete.png")).await?;
    alice.find("#confirm-delete-button").await?.click().await?;
    wait_for_messages(&bob, &[("alice", "edited text")]).await?;
    wait_for_messages(&alice, &[("alice", "edited text")]).await?;

    // 6. Opening room Y marks it read: bob's count there drops to zero.
    bob.goto(&room_y).await?;
    wait_online(&bob).await?;
    wait_for_unread(&bob, "yroom", 0).await?;
    wait_for_title(&bob, "(1) #yroom · chatctl").await?;

    // Phone-sized: the conversation, then the sidebar drawer.
    bob.set_window_size(390, 844).await?;
    wait_for_narrow_viewport(&bob).await?;
    bob.screenshot(&shots.join("14-phone-conversation.png")).await?;
    bob.find("#sidebar-toggle").await?.click().await?;
    poll("the drawer to open", || async {
        let open = bob
            .execute(
                "const r = document.getElementById('sidebar').getBoundingClientRect(); \
                 return document.body.classList.contains('drawer-open') && r.left >= 0 && r.width > 200;",
            )
            .await?;
        Ok(if open == true { Ok(()) } else { Err("drawer closed or still sliding".to_owned()) })
    })
    .await?;
    bob.screenshot(&shots.join("15-phone-sidebar-drawer.png")).await?;
    bob.prefer_dark(true).await?;
    poll("the page to switch to its dark colours", || async {
        let dark = bob.execute("return matchMedia('(prefers-color-scheme: dark)').matches").await?;
        Ok(if dark == true { Ok(()) } else { Err(format!("{dark}")) })
    })
    .await?;
    bob.screenshot(&shots.join("15b-phone-sidebar-drawer-dark.png")).await?;
    bob.prefer_dark(false).await?;
    bob.find("#sidebar-list a[data-room='dm:alice:bob']").await?.click().await?;
    poll("bob to open the direct chat from the drawer", || async {
        let url = bob.current_url().await?;
        Ok(if url == format!("{base}/direct/alice") { Ok(()) } else { Err(url) })
    })
    .await?;
    wait_online(&bob).await?;
    wait_for_unread(&bob, "dm:alice:bob", 0).await?;
    bob.screenshot(&shots.join("16-phone-direct.png")).await?;

    // carol, a superuser, deletes alice's message in room X from its menu
    // (Delete only: editing stays the author's); alice sees it go.
    carol.goto(&room_x).await?;
    wait_online(&carol).await?;
    wait_for_messages(&carol, &[("alice", "edited text")]).await?;
    carol.find("#messages > li.msg:last-child .bubble").await?.click().await?;
    carol.find("#messages > li.msg:last-child .msg-menu-btn").await?.click().await?;
    let items = carol
        .execute(
            "return Array.from(document.querySelectorAll('#msg-menu button:not([hidden])'), (b) => b.dataset.action)",
        )
        .await?;
    ensure!(items == serde_json::json!(["delete"]), "a superuser's menu on someone else's message: {items}");
    carol.find("#msg-menu [data-action=delete]").await?.click().await?;
    carol.find("#confirm-delete-button").await?.click().await?;
    wait_for_messages(&alice, &[]).await?;
    wait_for_messages(&carol, &[]).await?;

    // The lobby: the room directory and the username completion.
    carol.goto(&format!("{base}/")).await?;
    poll("the room directory to list both rooms, room X (now empty) last", || async {
        let names = carol
            .execute("return Array.from(document.querySelectorAll('#directory-list .conv-name'), (e) => e.textContent)")
            .await?;
        Ok(if names == serde_json::json!(["#yroom", "#xroom"]) { Ok(()) } else { Err(names.to_string()) })
    })
    .await?;
    carol.find("#direct-name").await?.send_keys("@al").await?;
    poll("the completion to offer alice", || async {
        let names = carol
            .execute(
                "return Array.from(document.querySelectorAll('#direct-options .combo-name'), (e) => e.textContent)",
            )
            .await?;
        Ok(if names == serde_json::json!(["alice"]) { Ok(()) } else { Err(names.to_string()) })
    })
    .await?;
    carol.screenshot(&shots.join("17-desktop-lobby-completion.png")).await?;
    carol.find("#direct-name").await?.send_keys(&format!("ice{ENTER}")).await?;
    poll("carol to open the direct chat with alice from \"@alice\"", || async {
        let url = carol.current_url().await?;
        Ok(if url == format!("{base}/direct/alice") { Ok(()) } else { Err(url) })
    })
    .await?;
    wait_online(&carol).await?;
    carol.set_window_size(390, 844).await?;
    wait_for_narrow_viewport(&carol).await?;
    carol.goto(&format!("{base}/")).await?;
    wait_for_directory(&carol).await?;
    carol.screenshot(&shots.join("18-phone-lobby.png")).await?;

    // 7. bob changes his password on another device: this browser's session
    // ends, the page says so and takes him to the sign-in page, which says why.
    let mut other_device = chatctl::client::Client::new(&base)?;
    ensure!(other_device.login("bob", PASSWORD).await?.status == 200, "bob signs in on another device");
    let changed = other_device
        .post_json(
            "/api/password",
            &serde_json::json!({"old_password": PASSWORD, "new_password": "a brand new passphrase 42"}),
        )
        .await?;
    ensure!(changed.status == 200, "changing bob's password: {} {}", changed.status, changed.text());
    poll("bob's page to say he was signed out", || async {
        let text = bob.execute("return document.querySelector('.signed-out-banner')?.textContent ?? null").await?;
        match text.as_str() {
            Some(t) if t.starts_with("You were signed out") => Ok(Ok(())),
            _ => Ok(Err(format!("banner {text}"))),
        }
    })
    .await?;
    bob.screenshot(&shots.join("19-phone-signed-out.png")).await?;
    poll("bob to land on the sign-in page with its notice", || async {
        let url = bob.current_url().await?;
        if !url.starts_with(&format!("{base}/login?")) {
            return Ok(Err(url));
        }
        let notice = bob.execute("return document.querySelector('.notice')?.textContent ?? ''").await?;
        let next = url.contains("next=%2Fdirect%2Falice") && url.contains("reason=signed_out");
        Ok(if next && notice.as_str().is_some_and(|n| n.contains("signed out")) {
            Ok(())
        } else {
            Err(format!("at {url}, notice {notice}"))
        })
    })
    .await?;
    bob.screenshot(&shots.join("20-phone-login-after-sign-out.png")).await?;

    for (who, session) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        assert_no_console_errors(who, session).await?;
    }
    alice.quit().await?;
    bob.quit().await?;
    carol.quit().await?;
    drop(driver);
    server.shutdown().await;
    eprintln!("browser test screenshots: {}", shots.display());
    Ok(())
}

/// Records every notification the page raises (title, body), in the page
/// and in localStorage for another tab to read, and every change of the
/// page's visibility.
const SPY_ON_NOTIFICATIONS: &str = "window.__notifications = []; window.__visibility = []; \
    document.addEventListener('visibilitychange', () => window.__visibility.push(document.visibilityState)); \
    const Real = window.Notification; \
    window.Notification = class extends Real { constructor(title, options) { super(title, options); \
    window.__notifications.push([title, options && options.body]); \
    localStorage.setItem('spy-notifications', JSON.stringify(window.__notifications)); } }; \
    return Real.permission;";

/// Nothing went wrong in the page's scripts (or loading them) during the test.
async fn assert_no_console_errors(who: &str, session: &Session) -> anyhow::Result<()> {
    let errors = session.console_errors().await?;
    ensure!(errors.is_empty(), "{who}'s browser console has errors: {errors:#?}");
    Ok(())
}

/// The sidebar lists exactly these conversations (their `room`), in this order.
async fn wait_for_sidebar(session: &Session, rooms: &[&str]) -> anyhow::Result<()> {
    let script = "return Array.from(document.querySelectorAll('#sidebar-list a.conv'), (a) => a.dataset.room);";
    poll(&format!("the sidebar to list {rooms:?}"), move || async move {
        let shown: Vec<String> = serde_json::from_value(session.execute(script).await?)?;
        Ok(if shown == rooms { Ok(()) } else { Err(format!("{shown:?}")) })
    })
    .await
}

/// The user socket has confirmed that the user's read marker in `room` is
/// at its latest message (the sidebar row's data attributes).
async fn wait_until_read(session: &Session, room: &str) -> anyhow::Result<()> {
    let script = format!(
        "const a = document.querySelector('#sidebar-list a.conv[data-room=\"{room}\"]'); \
         return a ? [a.dataset.latest ?? null, a.dataset.readUpTo ?? null] : null;"
    );
    let script = &script;
    poll(&format!("{room} to be read up to its latest message"), move || async move {
        let shown = session.execute(script).await?;
        let read = shown[0].is_string() && shown[0] == shown[1];
        Ok(if read { Ok(()) } else { Err(format!("[latest, read_up_to] = {shown}")) })
    })
    .await
}

/// The sidebar's unread count of `room` (0 when it shows none).
async fn wait_for_unread(session: &Session, room: &str, count: u64) -> anyhow::Result<()> {
    let script = format!(
        "const a = document.querySelector('#sidebar-list a.conv[data-room=\"{room}\"]'); \
         if (!a) return null; const b = a.querySelector('.unread'); return b ? Number(b.dataset.count) : 0;"
    );
    let script = &script;
    poll(&format!("{room}'s unread count to be {count}"), move || async move {
        let shown = session.execute(script).await?;
        Ok(if shown.as_u64() == Some(count) { Ok(()) } else { Err(format!("{shown}")) })
    })
    .await
}

/// The page title; the sidebar's rows (room, unread, read marker, latest)
/// go into the error when it does not come.
async fn wait_for_title(session: &Session, title: &str) -> anyhow::Result<()> {
    let script = "return [document.title, Array.from(document.querySelectorAll('#sidebar-list a.conv'), \
                  (a) => [a.dataset.room, a.querySelector('.unread')?.dataset.count ?? '0', \
                  a.dataset.readUpTo ?? null, a.dataset.latest ?? null])];";
    poll(&format!("the title to read {title:?}"), move || async move {
        let shown = session.execute(script).await?;
        Ok(if shown[0] == title { Ok(()) } else { Err(format!("{shown}")) })
    })
    .await
}

/// The direct chat's header shows the other person's presence.
async fn wait_for_peer_presence(session: &Session, online: bool) -> anyhow::Result<()> {
    poll(&format!("the header to show the peer online={online}"), move || async move {
        let state = session
            .execute("const p = document.getElementById('presence'); return p.hidden ? null : p.dataset.online;")
            .await?;
        Ok(if state == online.to_string().as_str() { Ok(()) } else { Err(format!("{state}")) })
    })
    .await
}

async fn wait_for_directory(session: &Session) -> anyhow::Result<()> {
    poll("the room directory to load", move || async move {
        let status = session.execute("return document.getElementById('directory-status').textContent").await?;
        Ok(if status == "" { Ok(()) } else { Err(format!("{status}")) })
    })
    .await
}

/// Messages in the room that pages back: more than one history frame's 50.
const LONG_ROOM_MESSAGES: usize = 120;

/// Posts `count` messages ("old message 1", …) as `user` through a plain
/// WebSocket and waits for the last one's echo, so all are stored.
async fn post_messages(base: &str, user: &str, room: &str, count: usize) -> anyhow::Result<()> {
    let mut client = chatctl::client::Client::new(base)?;
    let answer = client.login(user, PASSWORD).await?;
    ensure!(answer.status == 200, "signing {user} in over the API: {}", answer.status);
    let mut socket = client.connect(&format!("/ws/chat/{room}/"), None).await?;
    socket.next_of_type("history", PATIENCE).await?;
    for i in 1..=count {
        socket.send_message(&format!("old message {i}"), None).await?;
    }
    let last = format!("old message {count}");
    loop {
        let frame = socket.next_of_type("chat_handler", PATIENCE).await?;
        if frame["message"] == last.as_str() {
            break;
        }
    }
    socket.close().await;
    Ok(())
}

/// Scrolls `#scroller` to the top until every message is shown; each page
/// must arrive above the view without moving the message that was at the top.
async fn scroll_back_through_history(session: &Session) -> anyhow::Result<()> {
    let count = "return document.querySelectorAll('#messages > li.msg').length";
    poll("the newest 50 messages", || async {
        let n = session.execute(count).await?;
        Ok(if n == 50 { Ok(()) } else { Err(format!("{n} rows")) })
    })
    .await?;
    let mut shown = 50;
    while shown < LONG_ROOM_MESSAGES {
        // The first row's place on screen before and after the page arrives.
        let top = "const s = document.getElementById('scroller'); s.scrollTop = 0; \
                   s.dispatchEvent(new Event('scroll')); \
                   const first = document.querySelector('#messages > li.msg'); \
                   return [first.dataset.id, first.querySelector('.text').getBoundingClientRect().top];";
        let before: (String, f64) = serde_json::from_value(session.execute(top).await?)?;
        let (id, place) = &before;
        let grown = poll("an older page above the view", || async {
            let n = session.execute(count).await?.as_u64().unwrap_or(0) as usize;
            Ok(if n > shown { Ok(n) } else { Err(format!("{n} rows")) })
        })
        .await?;
        let script = format!(
            "const row = document.querySelector('#messages > li.msg[data-id=\"{id}\"]'); \
             return row ? row.querySelector('.text').getBoundingClientRect().top : null;"
        );
        let after = session.execute(&script).await?.as_f64().context("the row that was first is gone")?;
        ensure!((after - place).abs() < 2.0, "the view jumped: the message that was at {place}px is at {after}px");
        shown = grown;
    }
    let texts: Vec<String> = serde_json::from_value(
        session
            .execute("return Array.from(document.querySelectorAll('#messages .text'), (e) => e.textContent)")
            .await?,
    )?;
    let expected: Vec<String> = (1..=LONG_ROOM_MESSAGES).map(|i| format!("old message {i}")).collect();
    ensure!(texts == expected, "after scrolling back the room reads {texts:?}");
    Ok(())
}

/// Makes the users straight in storage, before the server opens it.
async fn create_users(data_dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let accounts: Vec<(&str, bool)> = names.iter().map(|name| (*name, false)).collect();
    create_accounts(data_dir, &accounts).await
}

/// As `create_users`, each with its superuser flag.
async fn create_accounts(data_dir: &Path, accounts: &[(&str, bool)]) -> anyhow::Result<()> {
    let data_dir = data_dir.to_path_buf();
    let accounts: Vec<(String, bool)> = accounts.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&data_dir, SchemaCheck::RequireCurrent)?;
        for (name, is_superuser) in accounts {
            store.create_user(&UserRecord {
                username: chatctl::domain::Username::parse(&name).expect("a valid test username"),
                email: String::new(),
                password_hash: chatctl::auth::password::hash(PASSWORD),
                is_superuser,
                is_active: true,
                created_at_ms: now_ms(),
            })?;
        }
        anyhow::Ok(())
    })
    .await?
}

fn screenshots_dir() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Polls `probe` until it answers `Ok(value)`; `Err(state)` (or a failed
/// WebDriver command, e.g. while a page loads) means "not yet", and the last
/// state goes into the timeout error.
async fn poll<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match probe().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => state,
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() >= deadline {
            bail!("waited {PATIENCE:?} for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_login_page(session: &Session, base: &str) -> anyhow::Result<()> {
    let login = &format!("{base}/login?");
    poll("the redirect to the login page", move || async move {
        let url = session.current_url().await?;
        if !url.starts_with(login) || !url.contains("next=") {
            return Ok(Err(format!("at {url}")));
        }
        session.find("#login-button").await?;
        Ok(Ok(()))
    })
    .await
}

async fn sign_in(session: &Session, base: &str, username: &str) -> anyhow::Result<()> {
    session.find("#username").await?.send_keys(username).await?;
    session.find("#password").await?.send_keys(PASSWORD).await?;
    session.find("#login-button").await?.click().await?;
    poll(&format!("{username} to leave the login page"), move || async move {
        let url = session.current_url().await?;
        if url.starts_with(&format!("{base}/login")) {
            let error = session.execute("return document.querySelector('.error')?.textContent ?? ''").await?;
            return Ok(Err(format!("still at {url}, error text {error}")));
        }
        Ok(Ok(()))
    })
    .await
}

/// The connection pill: the client sets `data-state="online"` once the
/// conversation's socket opens (and then hides the pill).
async fn wait_online(session: &Session) -> anyhow::Result<()> {
    poll("the conversation socket to open", move || async move {
        let state = session.execute("return document.getElementById('status')?.dataset.state ?? null").await?;
        if state == "online" {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("data-state {state}")))
        }
    })
    .await
}

/// Types a message and presses Enter; the emptied box says the client took it.
async fn send(session: &Session, text: &str) -> anyhow::Result<()> {
    let input = &session.find("#message-input").await?;
    input.send_keys(&format!("{text}{ENTER}")).await?;
    poll(&format!("the message box to empty after sending {text:?}"), move || async move {
        match input.property("value").await? {
            Value::String(s) if s.is_empty() => Ok(Ok(())),
            other => Ok(Err(format!("box holds {other}"))),
        }
    })
    .await
}

/// Waits until the confirmed (stored) rows of `#messages` are exactly `expected`.
async fn wait_for_messages(session: &Session, expected: &[(&str, &str)]) -> anyhow::Result<()> {
    let script = "return Array.from(document.querySelectorAll('#messages > li.msg:not(.pending)'), \
                  (li) => [li.dataset.author, li.querySelector('.text').textContent]);";
    poll(&format!("{} messages in #messages", expected.len()), move || async move {
        let rows: Vec<(String, String)> = serde_json::from_value(session.execute(script).await?)?;
        let same = rows.len() == expected.len()
            && rows.iter().zip(expected).all(|(got, want)| got.0 == want.0 && got.1 == want.1);
        Ok(if same { Ok(()) } else { Err(format!("{rows:?}")) })
    })
    .await
}

/// The script message is literal text in the list: no element was made of
/// it and no alert is open.
async fn assert_shown_as_text(who: &str, session: &Session) -> anyhow::Result<()> {
    let alert = session.alert_text().await?;
    ensure!(alert.is_none(), "{who}: an alert is open ({alert:?}): message text ran as script");
    let shown = session.find("#messages > li.msg:last-child .text").await?.text().await?;
    ensure!(shown == SCRIPT_TEXT, "{who}: the last message reads {shown:?}, expected the literal {SCRIPT_TEXT:?}");
    let scripts = session.execute("return document.querySelectorAll('#messages script').length").await?;
    ensure!(scripts == 0, "{who}: #messages holds {scripts} <script> elements");
    Ok(())
}

async fn wait_for_lobby(session: &Session) -> anyhow::Result<()> {
    let script = "const s = document.getElementById('conversations-status'); \
                  return [s ? s.textContent : null, \
                  Array.from(document.querySelectorAll('#conversations .conv-name'), (e) => e.textContent)];";
    poll("the lobby to list #lobby", move || async move {
        let (status, names): (Option<String>, Vec<String>) = serde_json::from_value(session.execute(script).await?)?;
        if status.as_deref() == Some("") && names.iter().any(|n| n == "#lobby") {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("status {status:?}, conversations {names:?}")))
        }
    })
    .await
}

async fn wait_for_narrow_viewport(session: &Session) -> anyhow::Result<()> {
    poll("the viewport to shrink to phone width", move || async move {
        let width = session.execute("return window.innerWidth").await?;
        match width.as_u64() {
            Some(w) if w <= 400 => Ok(Ok(())),
            _ => Ok(Err(format!("innerWidth {width}"))),
        }
    })
    .await
}
