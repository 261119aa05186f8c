//! One upgraded connection shared by the socket's reader, its writer and a
//! third handle kept for closing. `tokio::io::split` gives only two halves,
//! and fastwebsockets keeps its read half to itself; after a close we still
//! need to shut down the write side and read what the peer sent, because
//! closing a TCP socket with unread bytes makes the kernel answer with a
//! reset, and the peer would then never read our close frame.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

type Io = TokioIo<Upgraded>;

/// A handle on the connection. The lock is held only inside one `poll_*`
/// call, never across an await.
#[derive(Clone)]
pub struct SharedIo(Arc<Mutex<Io>>);

impl SharedIo {
    /// Shares one upgraded connection between the reader, the writer and the closer.
    pub fn new(io: Io) -> Self {
        SharedIo(Arc::new(Mutex::new(io)))
    }

    fn with<T>(&self, call: impl FnOnce(Pin<&mut Io>) -> T) -> T {
        let mut io = self.0.lock().unwrap_or_else(|p| p.into_inner());
        call(Pin::new(&mut *io))
    }

    /// Ends our side (FIN) and reads and discards until the peer closes
    /// too, or `within` passes.
    pub async fn finish(mut self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            let _ = self.shutdown().await;
            // On the heap, and only while closing: an array here would make
            // every open socket's task 4 KiB larger.
            let mut sink = vec![0u8; 4096];
            while matches!(self.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

impl AsyncRead for SharedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_read(cx, buf))
    }
}

impl AsyncWrite for SharedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.with(|io| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|io| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.with(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_shutdown(cx))
    }
}
