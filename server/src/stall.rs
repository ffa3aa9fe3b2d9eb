//! A socket whose writes may not stall: a write (or flush) that makes no
//! progress for the limit fails with `TimedOut`, so an HTTP client that
//! sends requests but never reads the answers cannot hold its connection,
//! and its place in the HTTP stage, forever. (hyper times the reading of a
//! request head, not the writing of a response.)
//!
//! Owned by the connection's task, on its shard. Progress of any size
//! resets the timer: a slow reader is fine, a stopped one is not. After a
//! WebSocket upgrade the inner stream is taken out and this wrapper is gone:
//! WebSocket writes are the shard's, with their own outbox limits.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a limit on how long a write may wait. Owned by one task.
#[derive(Debug)]
pub struct StallLimited<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallLimited<S> {
    /// Wraps `inner`; writes that wait longer than `limit` fail.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Turns a pending write into `TimedOut` once it has waited the limit.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progressed(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progressed(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit_and_one_that_progresses_does_not() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut limited = StallLimited::new(near, Duration::from_millis(100));
        // Filling the pipe, then waiting on it with nobody reading: timed out.
        let stuck = limited.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(stuck.kind(), io::ErrorKind::TimedOut);
        // With a reader draining it, a large write completes.
        let (near, mut far2) = tokio::io::duplex(1024);
        let mut limited = StallLimited::new(near, Duration::from_millis(100));
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            let _ = far2.read_exact(&mut sink).await;
        });
        limited.write_all(&vec![1u8; 64 * 1024]).await.unwrap();
        reader.await.unwrap();
        drop(far.read(&mut [0u8; 1]).await);
    }
}
