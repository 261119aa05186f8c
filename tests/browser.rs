//! The embedded client in a real browser: two Chromiums (separate cookie
//! jars) sign in through the login page, chat live in one room, see markup
//! as plain text, and get the history back after a reload. Screenshots land
//! in `target/browser-screenshots/` for a human to look at.
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

/// WebDriver's key code for Enter.
const ENTER: &str = "\u{E007}";
/// How long anything the user would wait for may take.
const PATIENCE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery staple";
const SCRIPT_TEXT: &str = "<script>alert(1)</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_sign_in_chat_live_see_markup_as_text_and_reload_history() -> anyhow::Result<()> {
    if !browser_support::browser_available() {
        return Ok(());
    }
    let data = tempfile::tempdir()?;
    create_users(data.path(), &["alice", "bob"]).await?;
    let server = chatctl::startup::start(ServerConfig::ephemeral(data.path())).await?;
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

    // 5. A reload rebuilds the conversation from history.
    bob.refresh().await?;
    wait_online(&bob).await?;
    wait_for_messages(&bob, &all).await?;
    assert_shown_as_text("bob after reload", &bob).await?;
    bob.screenshot(&shots.join("03-bob-room-after-reload.png")).await?;

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

    alice.quit().await?;
    bob.quit().await?;
    drop(driver);
    server.shutdown().await;
    eprintln!("browser test screenshots: {}", shots.display());
    Ok(())
}

/// Makes the users straight in storage, before the server opens it.
async fn create_users(data_dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let data_dir = data_dir.to_path_buf();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&data_dir, SchemaCheck::RequireCurrent)?;
        for name in names {
            store.create_user(&UserRecord {
                username: chatctl::domain::Username::parse(&name).expect("a valid test username"),
                email: String::new(),
                password_hash: chatctl::auth::password::hash(PASSWORD),
                is_superuser: false,
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

/// The status pill: chat.js sets `data-state="online"` and "Online" once the socket opens.
async fn wait_online(session: &Session) -> anyhow::Result<()> {
    poll("the status pill to say Online", move || async move {
        let pill = session.find("#status").await?;
        let text = pill.text().await?;
        let state = session.execute("return document.getElementById('status').dataset.state").await?;
        if text == "Online" && state == "online" {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("text {text:?}, data-state {state}")))
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
