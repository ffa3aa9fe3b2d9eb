//! A connection's byte stream: plain TCP, or TLS over TCP, chosen when the
//! connection is accepted and fixed for its life.
//!
//! Owned by one shard thread, inside its [`Conn`](super::conn::Conn). The
//! TLS handshake is the HTTP layer's business and is complete before a
//! connection is attached; from then on the engine drives the rustls
//! session itself, without a task or a buffer of its own per connection:
//!
//! - **Writing.** [`Transport::write_vectored`] hands the outbox's frames to
//!   the session in one call, which seals them into as few records as fit
//!   (16 KiB of plaintext each) and buffers them; [`Transport::push`] writes
//!   the buffered records with one vectored write. The session's buffer is
//!   bounded ([`TLS_BUFFER_LIMIT`]): the outbox only advances by what the
//!   session accepted, so the outbox's limits and slow-consumer accounting
//!   work as they do on plain TCP, with at most that much more in flight.
//! - **Reading.** [`Transport::try_read`] fills the caller's buffer with
//!   plaintext, reading and decrypting records as needed. A session may hold
//!   decrypted bytes the socket no longer signals, so a short read does not
//!   mean the socket is drained ([`Transport::drained_by`]) and
//!   [`Transport::poll_readable`] answers at once while plaintext is waiting.
//! - **Records the session makes by itself** (alerts, TLS 1.3 session
//!   tickets and key updates) are written by the next [`Transport::push`],
//!   which every flush starts with.
//!
//! The plain path is the socket's own calls, one `match` away.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Socket reads into a TLS session per [`Transport::try_read`] that yield
/// no plaintext before it gives up its turn.
const RECORD_READS_PER_CALL: usize = 4;

/// How long closing waits for the socket to take the `close_notify`.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_millis(500);

/// The most encrypted bytes a TLS session holds for its socket: what the
/// session accepts from the outbox beyond what the socket took.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// A connection's byte stream. Owned by one shard thread.
pub struct Transport {
    tcp: TcpStream,
    /// Boxed: most connections are plain, and every connection pays for
    /// the room inline (docs/architecture.md, *Memory per connection*).
    tls: Option<Box<Tls>>,
}

struct Tls {
    session: RefCell<ServerConnection>,
    /// Decrypted bytes the session holds that have not been read.
    plaintext: Cell<usize>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.tcp.peer_addr().ok())
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl Transport {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }

    /// A TLS connection whose handshake is complete. Plaintext the session
    /// already decrypted (read past the upgrade request) is read first.
    pub fn tls(tcp: TcpStream, mut session: ServerConnection) -> Self {
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let plaintext = session
            .process_new_packets()
            .map_or(0, |state| state.plaintext_bytes_to_read());
        Self {
            tcp,
            tls: Some(Box::new(Tls {
                session: RefCell::new(session),
                plaintext: Cell::new(plaintext),
            })),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Waits until the socket takes writes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Ready when [`Transport::try_read`] may have something: at once while
    /// the TLS session holds plaintext. A poll, for whoever owns the
    /// connection in its phase (the shard's driver, with the connection's
    /// waker; its opening or closing task): no future to keep, the waker
    /// lives in the socket's registration. Only the owner may poll the
    /// socket's readiness (tokio keeps one waker per direction: the last
    /// to poll); others use `try_*` calls, which register none.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tls.as_ref().is_some_and(|tls| tls.plaintext.get() > 0) {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Ready when the socket takes writes: [`Transport::writable`] as a
    /// poll (see [`Transport::poll_readable`]).
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Whether a read of `n` bytes into a buffer of `len` proves the stream
    /// drained for now. On TCP a short read does; a TLS session may still
    /// hold plaintext, so only `WouldBlock` does.
    pub fn drained_by(&self, n: usize, len: usize) -> bool {
        n < len && self.tls.is_none()
    }

    /// Reads plaintext into `buf`. `Ok(0)` is the end of the stream (a TCP
    /// FIN, or a TLS `close_notify`); a TLS record that fails to decrypt or
    /// parse is `InvalidData` (its alert goes out with the next push).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_read(buf);
        };
        let mut session = tls.session.borrow_mut();
        // Records that decrypt to nothing (key updates, empty records) end
        // the call after a few, as if the socket were drained: its readiness
        // stays set, so the driver polls the connection again.
        for _ in 0..RECORD_READS_PER_CALL {
            match session.reader().read(buf) {
                Ok(n) => {
                    tls.plaintext.set(tls.plaintext.get().saturating_sub(n));
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            tls.plaintext.set(0);
            if session.read_tls(&mut SocketRead(&self.tcp))? == 0 {
                return Ok(0);
            }
            let state = session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            tls.plaintext.set(state.plaintext_bytes_to_read());
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Ok(0);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Writes what it can of `bufs`: on TCP straight to the socket; with TLS
    /// into the session, sealed into records that [`Transport::push`] then
    /// writes. Returns how many bytes of `bufs` were taken.
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => self.tcp.try_write_vectored(bufs),
            Some(tls) => tls.session.borrow_mut().writer().write_vectored(bufs),
        }
    }

    /// Whether the TLS session holds records the socket has not taken.
    pub fn has_pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.session.borrow().wants_write())
    }

    /// Writes the TLS records the session holds. `Ok(())` once none is
    /// left (always, on TCP); `WouldBlock` while the socket is full.
    pub fn push(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let mut session = tls.session.borrow_mut();
        while session.wants_write() {
            if session.write_tls(&mut SocketWrite(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Ends the stream: a TLS `close_notify` (best effort), then a TCP
    /// half-close.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            tls.session.borrow_mut().send_close_notify();
            let flushed = async {
                while let Err(e) = self.push() {
                    if e.kind() != io::ErrorKind::WouldBlock || self.writable().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, flushed).await;
        }
        self.tcp.shutdown().await
    }

    /// Reads and discards until the peer's EOF (or an error).
    pub async fn drain_until_eof(&self) {
        let mut sink = [0u8; 512];
        loop {
            if self.tcp.readable().await.is_err() {
                return;
            }
            match self.tcp.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// The socket as `io::Read` for rustls: non-blocking reads.
struct SocketRead<'a>(&'a TcpStream);

impl Read for SocketRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// The socket as `io::Write` for rustls: non-blocking, vectored writes.
struct SocketWrite<'a>(&'a TcpStream);

impl Write for SocketWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
