//! The control socket's listener, spawned by `startup`. The socket file is
//! owner-only (0600) and every peer's uid (SO_PEERCRED) must be the
//! server's own or root, so only the account that runs chatctl (or root)
//! can administer it. A stale file from a crash is replaced at start; the
//! file is removed at shutdown.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::protocol::{Command, ErrorKind, Reply, Request, Response, SOCKET_FILE, VERSION};
use crate::app::App;
use crate::shutdown::Stopping;

/// A request line is small; anything longer is not one.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client that connects must send its line within this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once; more wait in the kernel's accept queue.
const CONCURRENT: usize = 4;

/// Where a data dir's control socket lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Binds the socket and spawns its accept loop, which ends (and removes
/// the file) when the server begins to shut down.
pub fn listen(app: Arc<App>, shutdown: Stopping) -> std::io::Result<PathBuf> {
    let path = socket_path(&app.config.data_dir);
    // The database lock already proves no other server runs on this data
    // dir, so a file here is a stale one from a crash.
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale control socket"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let listener = UnixListener::bind(&path)?;
    // Peers are checked by uid too, so the instant before chmod is harmless.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = std::fs::metadata(&path)?.uid();
    tokio::spawn(accept_loop(listener, path.clone(), owner, app, shutdown));
    Ok(path)
}

async fn accept_loop(listener: UnixListener, path: PathBuf, owner: u32, app: Arc<App>, mut shutdown: Stopping) {
    let _running = shutdown.running();
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        // Wait for a free slot first, so a shutdown is seen while all are busy.
        let slot = tokio::select! {
            _ = shutdown.requested() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let app = app.clone();
                let running = shutdown.running();
                tokio::spawn(async move {
                    let _running = running;
                    if let Err(error) = serve_one(stream, owner, &app).await {
                        tracing::debug!(%error, "control connection ended early");
                    }
                    drop(slot);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accepting on the control socket failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

/// One request line (with, for a backup, the file to write into), one
/// response line.
async fn serve_one(mut stream: UnixStream, owner: u32, app: &App) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    // Read the line in every case, so a refused client gets its answer, not a broken pipe.
    let reply = match tokio::time::timeout(READ_TIMEOUT, read_request(&stream)).await {
        Ok(Ok((line, _))) if line.is_empty() => return Ok(()), // a probe: the client only checked that we answer
        Ok(Ok(_)) if uid != owner && uid != 0 => {
            tracing::warn!(uid, "refused a control connection from another user");
            Reply::error(
                ErrorKind::Forbidden,
                format!("permission denied: uid {uid} is neither root nor the user running this server (uid {owner})"),
            )
        }
        Ok(Ok((line, files))) => handle(&String::from_utf8_lossy(&line), files, uid, app).await,
        Ok(Err(error)) => return Err(error),
        Err(_) => Reply::error(ErrorKind::BadRequest, "no request line within 10 s"),
    };
    let mut bytes = serde_json::to_vec(&Response { v: VERSION, reply }).expect("responses serialise");
    bytes.push(b'\n');
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

/// Reads up to the first newline (or `MAX_REQUEST` bytes, or the end), and
/// the file descriptors sent along (SCM_RIGHTS), which arrive with the bytes.
async fn read_request(stream: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut line = Vec::new();
    let mut files = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let received = stream.try_io(Interest::READABLE, || {
            let mut slices = [IoSliceMut::new(&mut buf)];
            rustix::net::recvmsg(stream, &mut slices, &mut ancillary, RecvFlags::CMSG_CLOEXEC)
                .map(|r| r.bytes)
                .map_err(std::io::Error::from)
        });
        let count = match received {
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        for message in ancillary.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                files.extend(rights);
            }
        }
        line.extend_from_slice(&buf[..count]);
        if count == 0 || line.contains(&b'\n') || line.len() as u64 >= MAX_REQUEST {
            if let Some(end) = line.iter().position(|&b| b == b'\n') {
                line.truncate(end);
            }
            return Ok((line, files));
        }
    }
}

async fn handle(line: &str, files: Vec<OwnedFd>, uid: u32, app: &App) -> Reply {
    let request = match serde_json::from_str::<Request>(line) {
        Ok(request) => request,
        Err(error) => {
            // An unknown command from a newer client lands here too.
            let version = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["v"].as_u64());
            return Reply::error(
                ErrorKind::BadRequest,
                format!(
                    "this server (control protocol version {VERSION}) cannot read the request{} ({error}); use the chatctl binary of the running server",
                    version.map(|v| format!(" of version {v}")).unwrap_or_default()
                ),
            );
        }
    };
    if request.v != VERSION {
        return Reply::error(
            ErrorKind::BadRequest,
            format!(
                "this server speaks control protocol version {VERSION}, not {}; use the chatctl binary of the running server",
                request.v
            ),
        );
    }
    let name = request.command.name();
    tracing::info!(command = name, uid, "control command");
    let reply = match (request.command, files.into_iter().next()) {
        (Command::Backup { to, attached: true, .. }, Some(file)) => {
            super::ops::backup_into(&app.store, std::fs::File::from(file), to).await
        }
        (command, _) => super::ops::execute(&app.store, Some(&app.log), command).await,
    };
    if let Reply::Error { kind, message } = &reply {
        tracing::info!(command = name, ?kind, %message, "control command refused");
    }
    reply
}
