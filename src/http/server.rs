//! The accept loop: one task per connection, capped by a semaphore, with
//! hyper's limits set to PROTOCOL.md's (headers 16 KiB, 10 s to send them).
//! With TLS, each connection first completes its handshake (within the same
//! 10 s) in its own task, so a slow client never holds up the loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::app::App;

/// Connections served at once; past this, new ones wait in the backlog.
const MAX_CONNECTIONS: usize = 50_000;
const MAX_HEADER_BYTES: usize = 16 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until `shutdown` flips, then lets each connection finish its
/// current request. Returns once no HTTP connection task is left.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = crate::app::App::stopping(&mut shutdown) => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            _ = crate::app::App::stopping(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed; backing off for {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return serve(stream, app, client, shutdown).await;
            };
            let stream = tokio::select! {
                _ = crate::app::App::stopping(&mut shutdown) => return,
                stream = super::tls::accept(&acceptor, stream, client, HEADER_TIMEOUT) => stream,
            };
            if let Some(stream) = stream {
                serve(stream, app, client, shutdown).await;
            }
        });
    }
    // Wait for in-flight HTTP connections: each holds a permit until it ends.
    let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(MAX_CONNECTIONS as u32)).await;
}

/// Serves HTTP/1.1 (and upgrades) on one connection, plain or TLS, until it
/// ends or shutdown lets its current request finish.
async fn serve<S>(stream: S, app: Arc<App>, client: SocketAddr, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
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
        _ = crate::app::App::stopping(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}
