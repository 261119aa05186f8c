//! The server under test: `target/release/chatctl serve` as a child process
//! on a free loopback port with a fresh data dir, its accounts made before
//! it starts, its log kept in `target/bench/logs/`. Dropping a `Server`
//! stops the process (SIGTERM, then SIGKILL) and removes its data dir.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BoxError;

/// Every bench account's password (passes chatctl's password rules).
pub const PASSWORD: &str = "Bench-pw-7f3k2q9z";

/// How long a stopping server gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Removed (after the process is gone) when the server is dropped.
    _data_dir: tempfile::TempDir,
}

/// Where a server's data and log go, and which broker (if any) it uses.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub log: PathBuf,
    pub accounts: &'a [String],
    /// `(amqp_url, stream)` to run as a cluster node.
    pub cluster: Option<(&'a str, &'a str)>,
    /// `--max-connections-per-address`. Load scenarios turn it off (0), and
    /// `--max-sockets-per-user` with it: every simulated client connects
    /// from 127.0.0.1 as one of two users, and the caps would refuse all but
    /// the first 64. The attack scenarios keep the defaults (64 and 64).
    pub per_address_cap: u32,
}

/// `serve`'s own default for `--max-connections-per-address`.
pub const DEFAULT_PER_ADDRESS_CAP: u32 = 64;

impl Server {
    /// Makes the accounts (single node only), then starts `serve`. Does not
    /// wait for readiness: see `http::wait_ready`.
    pub fn start(launch: Launch<'_>) -> Result<Server, BoxError> {
        let data_dir = tempfile::Builder::new().prefix("chatctl-bench-").tempdir()?;
        for username in launch.accounts {
            // redb allows one process per file: accounts go in before `serve` opens it.
            let output = Command::new(launch.binary)
                .args(["createsuperuser", "--no-input", "--username", username, "--data-dir"])
                .arg(data_dir.path())
                .env("CHATCTL_SUPERUSER_PASSWORD", PASSWORD)
                .output()
                .map_err(|e| format!("running {} createsuperuser: {e}", launch.binary.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "createsuperuser {username} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
                .into());
            }
        }
        let addr = free_port()?;
        if let Some(parent) = launch.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = File::create(&launch.log).map_err(|e| format!("creating {}: {e}", launch.log.display()))?;
        let mut command = Command::new(launch.binary);
        command
            .args(["serve", "--bind", &addr.to_string(), "--data-dir"])
            .arg(data_dir.path())
            .args(["--message-rate", "0"])
            .args(["--max-connections-per-address", &launch.per_address_cap.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if launch.per_address_cap == 0 {
            // Load scenarios: one user holds thousands of sockets.
            command.args(["--max-sockets-per-user", "0"]);
        }
        if let Some((url, stream)) = launch.cluster {
            command.args(["--amqp-url", url, "--amqp-stream", stream]);
        }
        let child = command.spawn().map_err(|e| format!("starting {} serve: {e}", launch.binary.display()))?;
        Ok(Server { child, addr, log: launch.log, _data_dir: data_dir })
    }

    /// Where the server keeps its database (and its control socket).
    pub fn data_dir(&self) -> &Path {
        self._data_dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err when the process has exited (it should run until we stop it).
    pub fn check_running(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("the server exited ({status}); its log: {}", self.log_tail()).into()),
        }
    }

    pub fn cpu_seconds(&self) -> Result<f64, BoxError> {
        Ok(super::sys::cpu_seconds(self.pid())?)
    }

    pub fn rss_kib(&self) -> Result<u64, BoxError> {
        Ok(super::sys::rss_kib(self.pid())?)
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
        format!("{}\n    {tail}", self.log.display())
    }

    /// Waits until the log holds a line containing `needle`; returns that line.
    pub async fn wait_for_log(&mut self, needle: &str, within: Duration) -> Result<String, BoxError> {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(format!("the server did not log `{needle}` within {within:?}: {}", self.log_tail()).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (SIGTERM, SIGKILL after a grace period) and says how it ended.
    pub fn stop(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had already exited ({status})");
        }
        // SAFETY: signals our own child, whose pid we hold until it is reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("stopped ({status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("did not stop within {STOP_GRACE:?} of SIGTERM: killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on 127.0.0.1 now (the OS picks it; we release it for `serve`).
fn free_port() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
