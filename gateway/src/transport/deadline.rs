//! A socket wrapper for HTTP connections: a write that makes no progress for its deadline
//! fails (the peer stopped reading: pipelined requests whose responses it never takes, a
//! half-dead connection), and so does a connection that sends nothing for its idle deadline
//! between requests. hyper then drops the connection, and its memory with it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The wrapped socket and its two deadlines.
pub(crate) struct Deadlines<T> {
    inner: T,
    write_stall: Duration,
    read_idle: Option<Duration>,
    /// Armed while a write waits.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Armed while a read waits.
    read_timer: Option<Pin<Box<Sleep>>>,
}

impl<T> Deadlines<T> {
    /// `write_stall`: longest a write may wait for the peer; `read_idle`: longest a read may
    /// wait for the next byte (None: no limit).
    pub(crate) fn new(inner: T, write_stall: Duration, read_idle: Option<Duration>) -> Self {
        Self {
            inner,
            write_stall,
            read_idle,
            write_timer: None,
            read_timer: None,
        }
    }

    /// The socket again (an upgraded connection manages its own time).
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

/// Polls `timer` (armed at `limit` from now if it is not): `Err` once it fired.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, limit: Duration, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
    t.as_mut().poll(cx).is_ready()
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed"))
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => match this.read_idle {
                Some(limit) if expired(&mut this.read_timer, limit, cx) => {
                    Poll::Ready(Err(timed_out("read")))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> Deadlines<T> {
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if expired(&mut self.write_timer, self.write_stall, cx) {
                    return Poll::Ready(Err(timed_out("write")));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(self.guard(cx, |io, cx| io.poll_shutdown(cx)));
        Poll::Ready(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_at_its_deadline() {
        // A pipe with a 64-byte buffer whose other end nobody reads.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = Deadlines::new(ours, Duration::from_secs(5), None);
        let start = Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.expect_err("stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_deadlines_and_silence_ends_a_read() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = Deadlines::new(ours, Duration::from_secs(5), Some(Duration::from_secs(3)));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let mut total = 0;
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                total += theirs.read(&mut buf).await.expect("read");
            }
            theirs.write_all(b"hi").await.expect("write");
            (total, theirs)
        });
        // Slow but steady: 4 reads 2 s apart; each one makes room before the deadline.
        io.write_all(&[0u8; 256])
            .await
            .expect("a slow reader is fine");
        let (_, theirs) = reader.await.expect("join");
        let mut got = [0u8; 2];
        io.read_exact(&mut got).await.expect("read");
        let start = Instant::now();
        let err = io.read(&mut got).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        drop(theirs);
    }
}
