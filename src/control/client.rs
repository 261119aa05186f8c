//! The command line's side of the control socket: is a server running on
//! this data dir, and if so, ask it.

use std::fs::File;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;

use super::protocol::{Command, Reply, Response, VERSION};
use super::server::socket_path;

/// Why the running server could not be asked, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket exists but this user may not connect to it: run as the server's user.
    #[error("cannot open the control socket {path}: permission denied. Run this as the user that runs `chatctl serve` (or as root)")]
    PermissionDenied {
        /// The control socket, for the message.
        path: String,
    },
    /// Connecting, writing or reading failed for another reason.
    #[error("talking to the server over {path}: {cause}")]
    Io {
        /// The control socket, for the message.
        path: String,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The server took the request but gave no answer in time.
    #[error("the server did not answer over {path} within {within:?}; see its log")]
    Timeout {
        /// The control socket, for the message.
        path: String,
        /// How long the client waited.
        within: Duration,
    },
    /// The answer did not parse, or speaks another protocol version: mismatched binaries.
    #[error("the server's answer is not one this chatctl reads ({0}); use the chatctl binary of the running server")]
    Garbled(String),
}

/// Whether a server answers on `data_dir`'s control socket. A missing
/// socket, or a stale one nobody listens on, is `false`.
pub async fn server_answers(data_dir: &Path) -> Result<bool, ClientError> {
    let path = socket_path(data_dir);
    match UnixStream::connect(&path).await {
        Ok(_) => Ok(true),
        Err(error) => match error.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => Ok(false),
            std::io::ErrorKind::PermissionDenied => {
                Err(ClientError::PermissionDenied { path: path.display().to_string() })
            }
            _ => Err(ClientError::Io { path: path.display().to_string(), cause: error }),
        },
    }
}

/// Sends one command and reads its reply, within `within`.
pub async fn call(data_dir: &Path, command: Command, within: Duration) -> Result<Reply, ClientError> {
    call_with(data_dir, command, None, within).await
}

/// As `call`, sending `file` along with the request (SCM_RIGHTS): the
/// server writes a backup into it.
pub async fn call_with_file(
    data_dir: &Path,
    command: Command,
    file: &File,
    within: Duration,
) -> Result<Reply, ClientError> {
    call_with(data_dir, command, Some(file.as_fd()), within).await
}

async fn call_with(
    data_dir: &Path,
    command: Command,
    file: Option<BorrowedFd<'_>>,
    within: Duration,
) -> Result<Reply, ClientError> {
    let path = socket_path(data_dir);
    let shown = path.display().to_string();
    let exchange = async {
        let mut stream = UnixStream::connect(&path).await?;
        let mut line = serde_json::to_vec(&command.request()).expect("requests serialise");
        line.push(b'\n');
        let sent = match file {
            Some(fd) => send_with_fd(&stream, &line, fd).await?,
            None => 0,
        };
        stream.write_all(&line[sent..]).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(within, exchange).await {
        Err(_) => return Err(ClientError::Timeout { path: shown, within }),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(ClientError::PermissionDenied { path: shown })
        }
        Ok(Err(cause)) => return Err(ClientError::Io { path: shown, cause }),
        Ok(Ok(answer)) => answer,
    };
    if answer.is_empty() {
        return Err(ClientError::Io {
            path: shown,
            cause: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed without answering"),
        });
    }
    let response: Response = serde_json::from_str(&answer).map_err(|e| ClientError::Garbled(e.to_string()))?;
    if response.v != VERSION {
        return Err(ClientError::Garbled(format!("protocol version {}", response.v)));
    }
    Ok(response.reply)
}

/// Sends the first bytes of `line` with `fd` attached; returns how many
/// bytes went (the rest follows as plain bytes).
async fn send_with_fd(stream: &UnixStream, line: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    loop {
        stream.writable().await?;
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = SendAncillaryBuffer::new(&mut space);
        ancillary.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::net::sendmsg(stream, &[IoSlice::new(line)], &mut ancillary, SendFlags::empty())
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(count) => return Ok(count),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}
