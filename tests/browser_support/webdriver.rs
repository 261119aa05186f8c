//! Just enough of the W3C WebDriver protocol to drive Chromium through
//! chromedriver: sessions, navigation, elements, scripts, screenshots.
//! Each command is one HTTP/1.1 request on a fresh loopback connection.
//! `ChromeDriver` owns the chromedriver process and every session it opened,
//! and tears both down on drop, so a failing test leaves no browser behind.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{decode_base64, CHROMEDRIVER, CHROMIUM};

/// The key under which WebDriver names an element (W3C "web element identifier").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// No single command should take this long; a hung browser fails the test
/// instead of hanging it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags Chromium needs to run headless as root on a closed network:
/// without the background-networking ones it keeps dialling out and the
/// refused connections slow everything down.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// An error answer from the WebDriver server (`{"value": {"error", "message"}}`).
#[derive(Debug)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebDriver error {} ({}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// Shared between the driver and its sessions: where to talk, and what to
/// clean up. Each live session keeps its browser profile dir here so the
/// dir outlives the browser that uses it.
struct Shared {
    port: u16,
    live: Mutex<HashMap<String, TempDir>>,
}

/// A running chromedriver; killed (after closing its browsers) on drop.
pub struct ChromeDriver {
    shared: Arc<Shared>,
    child: Child,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub async fn start() -> anyhow::Result<ChromeDriver> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let mut driver = ChromeDriver { shared: Arc::new(Shared { port, live: Mutex::new(HashMap::new()) }), child };

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = driver.child.try_wait()? {
                bail!("chromedriver exited before it was ready ({exit})");
            }
            match call(port, Method::GET, "/status", None).await {
                Ok(status) if status["ready"] == true => return Ok(driver),
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(status) => bail!("chromedriver on port {port} never became ready: {status}"),
                Err(error) => return Err(error.context(format!("chromedriver on port {port} never answered /status"))),
            }
        }
    }

    /// Opens a new browser with its own fresh profile (so its own cookies).
    pub async fn new_session(&self) -> anyhow::Result<Session> {
        let profile = tempfile::Builder::new().prefix("chatctl-chromium-").tempdir()?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    // Leave any alert open, so a test can see that one appeared.
                    "unhandledPromptBehavior": "ignore",
                    // Keep the page's console, so a test can see script errors.
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let value = call(self.shared.port, Method::POST, "/session", Some(&capabilities))
            .await
            .context("creating a WebDriver session")?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("new session answer without sessionId: {value}"))?
            .to_owned();
        self.shared.live.lock().unwrap().insert(id.clone(), profile);
        Ok(Session { shared: self.shared.clone(), id })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Blocking on purpose: Drop cannot await, and this must also run
        // while a panic unwinds. Deleting a session quits its browser, which
        // killing chromedriver alone would leave running.
        let live: Vec<(String, TempDir)> = self.shared.live.lock().map(|mut l| l.drain().collect()).unwrap_or_default();
        for (id, _profile) in &live {
            delete_session_blocking(self.shared.port, id);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DELETE /session/{id}` over a plain blocking socket; errors are ignored
/// because this is last-ditch cleanup.
fn delete_session_blocking(port: u16, id: &str) {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// One WebDriver command: `value` of the answer, or a `WebDriverError`.
async fn call(port: u16, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let what = format!("{method} {path}");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        // WebDriver wants a JSON body on every POST, `{}` when there are no parameters.
        let payload = match (&method, body) {
            (_, Some(body)) => body.to_string(),
            (&Method::POST, None) => "{}".to_owned(),
            _ => String::new(),
        };
        let mut request = Request::builder().method(method.clone()).uri(path).header(HOST, format!("127.0.0.1:{port}"));
        if !payload.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json; charset=utf-8");
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(payload)))?).await?;
        let status = response.status();
        let raw = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, raw))
    };
    let (status, raw) = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{what}: no answer within {COMMAND_TIMEOUT:?}"))?
        .with_context(|| what.clone())?;
    let answer: Value = serde_json::from_slice(&raw)
        .with_context(|| format!("{what}: answer is not JSON: {:?}", String::from_utf8_lossy(&raw)))?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    Err(WebDriverError {
        status: status.as_u16(),
        error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
        message: value["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default().to_owned(),
    })
    .with_context(|| what)
}

/// One browser.
pub struct Session {
    shared: Arc<Shared>,
    id: String,
}

/// An element found in a session's current page.
pub struct Element<'s> {
    session: &'s Session,
    id: String,
}

impl Session {
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        call(self.shared.port, method, &format!("/session/{}{path}", self.id), body.as_ref()).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url }))).await?;
        Ok(())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        let value = self.cmd(Method::GET, "/url", None).await?;
        value.as_str().map(str::to_owned).ok_or_else(|| anyhow!("current URL is not a string: {value}"))
    }

    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/refresh", None).await?;
        Ok(())
    }

    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/window/rect", Some(json!({ "width": width, "height": height }))).await?;
        Ok(())
    }

    /// Grants or denies a permission (W3C Permissions' "Set Permission"),
    /// e.g. `notifications`, as the user's click on the browser's prompt would.
    pub async fn set_permission(&self, name: &str, state: &str) -> anyhow::Result<()> {
        let body = json!({ "descriptor": { "name": name }, "state": state });
        self.cmd(Method::POST, "/permissions", Some(body)).await?;
        Ok(())
    }

    /// The current window's handle.
    pub async fn window_handle(&self) -> anyhow::Result<String> {
        let value = self.cmd(Method::GET, "/window", None).await?;
        value.as_str().map(str::to_owned).ok_or_else(|| anyhow!("window handle is not a string: {value}"))
    }

    /// Opens a new tab and switches to it (the previous tab goes to the background).
    pub async fn new_tab(&self) -> anyhow::Result<String> {
        let value = self.cmd(Method::POST, "/window/new", Some(json!({ "type": "tab" }))).await?;
        let handle = value["handle"].as_str().ok_or_else(|| anyhow!("new window answer without handle: {value}"))?;
        self.switch_to(handle).await?;
        Ok(handle.to_owned())
    }

    pub async fn switch_to(&self, handle: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/window", Some(json!({ "handle": handle }))).await?;
        Ok(())
    }

    /// Closes the current tab; switch to another before the next command.
    pub async fn close_tab(&self) -> anyhow::Result<()> {
        self.cmd(Method::DELETE, "/window", None).await?;
        Ok(())
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light again), through
    /// chromedriver's DevTools passthrough, for screenshots of both themes.
    pub async fn prefer_dark(&self, dark: bool) -> anyhow::Result<()> {
        let scheme = if dark { "dark" } else { "light" };
        let params = json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] });
        self.cmd(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setEmulatedMedia", "params": params })),
        )
        .await?;
        Ok(())
    }

    /// The browser console's error entries since the last call (chromedriver's
    /// log endpoint), as "source: message" lines.
    pub async fn console_errors(&self) -> anyhow::Result<Vec<String>> {
        let value = self.cmd(Method::POST, "/se/log", Some(json!({ "type": "browser" }))).await?;
        let entries = value.as_array().cloned().unwrap_or_default();
        Ok(entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| format!("{}: {}", e["source"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")))
            .collect())
    }

    /// The first element matching a CSS selector; `no such element` is an error.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element<'_>> {
        let value = self.cmd(Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await?;
        let id = value[ELEMENT_KEY].as_str().ok_or_else(|| anyhow!("element answer without a reference: {value}"))?;
        Ok(Element { session: self, id: id.to_owned() })
    }

    /// Runs a synchronous script (`return ...;`) in the page and gives back its result.
    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.cmd(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// The open alert's text, or `None` when WebDriver says `no such alert`.
    pub async fn alert_text(&self) -> anyhow::Result<Option<String>> {
        match self.cmd(Method::GET, "/alert/text", None).await {
            Ok(value) => Ok(Some(value.as_str().unwrap_or_default().to_owned())),
            Err(error) => match error.downcast_ref::<WebDriverError>() {
                Some(e) if e.error == "no such alert" => Ok(None),
                _ => Err(error),
            },
        }
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self.cmd(Method::GET, "/screenshot", None).await?;
        let png = decode_base64(value.as_str().ok_or_else(|| anyhow!("screenshot is not a string"))?)?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Quits this browser and removes its profile.
    pub async fn quit(self) -> anyhow::Result<()> {
        let result = call(self.shared.port, Method::DELETE, &format!("/session/{}", self.id), None).await;
        // Whatever the answer, the driver's Drop must not try again.
        let profile = self.shared.live.lock().unwrap().remove(&self.id);
        drop(profile);
        result.map(drop)
    }
}

impl Element<'_> {
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.session.cmd(method, &format!("/element/{}{path}", self.id), body).await
    }

    /// Types `text` (WebDriver key codes such as `\u{E007}` for Enter included).
    pub async fn send_keys(&self, text: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/value", Some(json!({ "text": text }))).await?;
        Ok(())
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/clear", None).await?;
        Ok(())
    }

    pub async fn click(&self) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/click", None).await?;
        Ok(())
    }

    /// The rendered text, as a user sees it.
    pub async fn text(&self) -> anyhow::Result<String> {
        let value = self.cmd(Method::GET, "/text", None).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// A DOM property such as `value` (not the HTML attribute).
    pub async fn property(&self, name: &str) -> anyhow::Result<Value> {
        self.cmd(Method::GET, &format!("/property/{name}"), None).await
    }
}
