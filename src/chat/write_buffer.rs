//! A write buffer that costs (almost) nothing while a socket is idle. Frames
//! queued for one socket are gathered here and sent with one write per
//! batch; unlike `tokio::io::BufWriter`, whose 8 KiB is allocated for the
//! socket's whole life, the memory is given back after each flush, so ten
//! thousand idle sockets do not hold 80 MB of empty buffers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// Frames up to this size stay buffered; a larger batch is written out first.
const MAX_BUFFERED: usize = 64 * 1024;
/// Capacity kept across flushes: enough for a few small frames.
const KEEP_CAPACITY: usize = 512;

/// A socket's write buffer that gives its memory back after each flush, unlike `BufWriter`.
pub struct LazyBufWriter<W> {
    inner: W,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already written to `inner`.
    written: usize,
}

impl<W> LazyBufWriter<W> {
    /// Allocates nothing until the first write.
    pub fn new(inner: W) -> Self {
        LazyBufWriter { inner, buffer: Vec::new(), written: 0 }
    }
}

impl<W: AsyncWrite + Unpin> LazyBufWriter<W> {
    /// Writes out everything buffered, then drops the buffer's memory
    /// unless it is small.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.written = 0;
        self.buffer.clear();
        if self.buffer.capacity() > KEEP_CAPACITY {
            self.buffer = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LazyBufWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let full = this.buffer.len() + total > MAX_BUFFERED && !this.buffer.is_empty();
        if full && this.poll_drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if total > MAX_BUFFERED {
            // A large frame (a history frame) goes straight out rather than
            // being copied: a client that does not read would otherwise keep
            // a second copy of it alive here until the write deadline.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        for slice in slices {
            this.buffer.extend_from_slice(slice);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writes_are_gathered_until_flush_and_the_memory_is_returned() {
        let mut out = LazyBufWriter::new(Vec::new());
        out.write_all(b"hello ").await.unwrap();
        out.write_all(&vec![b'x'; 2000]).await.unwrap();
        assert!(out.inner.is_empty(), "nothing is written before a flush");
        out.flush().await.unwrap();
        assert_eq!(out.inner.len(), 2006);
        assert_eq!(out.buffer.capacity(), 0, "a large buffer is released after the flush");
        out.write_all(&vec![b'y'; MAX_BUFFERED]).await.unwrap();
        out.write_all(b"z").await.unwrap();
        assert_eq!(out.inner.len(), 2006 + MAX_BUFFERED, "a full buffer is written before more is added");
    }

    #[tokio::test]
    async fn a_write_larger_than_the_buffer_is_not_copied_into_it() {
        let mut out = LazyBufWriter::new(Vec::new());
        out.write_all(b"head").await.unwrap();
        out.write_all(&vec![b'x'; MAX_BUFFERED + 1]).await.unwrap();
        assert_eq!(out.inner.len(), 4 + MAX_BUFFERED + 1, "what was buffered goes first, then the large write");
        assert!(out.buffer.capacity() <= KEEP_CAPACITY, "the large write never lands in the buffer");
    }
}
