//! The accept loop: one task per connection, capped by a semaphore, with
//! hyper's limits set to PROTOCOL.md's (headers 16 KiB, 10 s to send them).
//! With TLS, each connection first completes its handshake (within the same
//! 10 s) in its own task, so a slow client never holds up the loop. An
//! address over `--max-connections-per-address` is refused at accept.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::per_address::{AddressSlot, ConnectionCaps, HeldSlot};
use crate::app::App;
use crate::shutdown::Stopping;

/// Connections served at once; past this, new ones wait in the backlog.
const MAX_CONNECTIONS: usize = 50_000;
const MAX_HEADER_BYTES: usize = 16 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait after failed accepts (out of file descriptors, say):
/// each failure doubles the wait from 10 ms up to this, so the loop never
/// spins, and connections already accepted keep being served meanwhile.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Connections the kernel holds for us between handshake and accept (it
/// caps this at `net.core.somaxconn`, 4096 by default). tokio's 1,024 filled
/// up during a burst of thousands of connects: the kernel then drops SYNs,
/// and every client caught there, a health check included, waits out a 1 s
/// retransmit.
const LISTEN_BACKLOG: u32 = 4096;
/// What a plain-HTTP client over its address's cap reads before the close.
const AT_CAP_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 66\r\nConnection: close\r\nRetry-After: 5\r\n\r\n\
too many open connections from your address; close some and retry\n";

/// The listening socket for `addr`, as `TcpListener::bind` makes it
/// (`SO_REUSEADDR`, so a restart does not wait out TIME_WAIT) but with a
/// backlog of `LISTEN_BACKLOG`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts until shutdown begins; each connection then finishes its
/// current request. The loop and every connection task hold a `Running`
/// guard, so shutdown knows when the last one has ended.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, app: Arc<App>, mut shutdown: Stopping) {
    let _running = shutdown.running();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let caps = ConnectionCaps::new(app.config.max_connections_per_address, app.config.trusted_proxies.clone());
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.requested() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed; backing off for {backoff:?}");
                    tokio::select! {
                        _ = shutdown.requested() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        let slot = match caps.admit(client.ip()) {
            Ok(slot) => slot.map(Arc::new),
            Err(_) => {
                refuse_at_cap(stream, client, tls.is_some());
                app.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        let tls = tls.clone();
        let running = shutdown.running();
        tokio::spawn(async move {
            let _held = (permit, running);
            let Some(acceptor) = tls else {
                return serve(stream, app, client, slot, shutdown).await;
            };
            let stream = tokio::select! {
                _ = shutdown.requested() => return,
                stream = super::tls::accept(&acceptor, stream, client, HEADER_TIMEOUT) => stream,
            };
            if let Some(stream) = stream {
                serve(stream, app, client, slot, shutdown).await;
            }
        });
    }
}

/// Closes a connection whose address is at its cap. A plain-HTTP client
/// first gets a 503, written only if the socket takes it at once (a TLS
/// client could not read it): the loop never waits on a refused client.
/// Warns at most once a minute, naming the address: usually an attacker,
/// but an undeclared reverse proxy looks the same.
fn refuse_at_cap(stream: TcpStream, client: SocketAddr, tls: bool) {
    static LAST_WARNED_MS: AtomicU64 = AtomicU64::new(0);
    if crate::telemetry::due(&LAST_WARNED_MS, Duration::from_secs(60)) {
        tracing::warn!(
            peer = %client.ip(),
            "refusing connections from {}: it holds --max-connections-per-address already; if it is your reverse proxy, start serve with --trusted-proxy {}",
            client.ip(),
            client.ip()
        );
    }
    if !tls {
        let _ = stream.try_write(AT_CAP_ANSWER);
    }
}

/// Serves HTTP/1.1 (and upgrades) on one connection, plain or TLS, until it
/// ends or shutdown lets its current request finish. `slot` (its address's
/// count) rides on each request, so an upgraded socket keeps it.
async fn serve<S>(stream: S, app: Arc<App>, client: SocketAddr, slot: Option<Arc<AddressSlot>>, mut shutdown: Stopping)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        if let Some(slot) = &slot {
            request.extensions_mut().insert(HeldSlot(slot.clone()));
        }
        let app = app.clone();
        async move { Ok::<_, Infallible>(super::route(app, request, client).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %client, "connection ended with an error");
            }
        }
        _ = shutdown.requested() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_at_cap_answer_declares_its_own_length() {
        let text = std::str::from_utf8(super::AT_CAP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
    }
}
