//! A connection's byte stream: plain TCP, or TLS over TCP, chosen when the
//! connection is accepted and fixed for its life.
//!
//! It has two forms, one per owner of the socket's readiness:
//!
//! - [`Transport`]: registered with tokio, as the HTTP layer hands it over
//!   (and as a connection refused before attaching is closed); its waits
//!   are futures.
//! - [`Attached`]: registered with its shard's own poll (`poller.rs`) from
//!   the moment it is attached, so a connection holds no readiness state of
//!   tokio's (256 bytes) for its life: one byte of readiness, set by the
//!   shard's poller from the kernel's events and cleared here when a read or
//!   write finds the socket not ready after all (`WouldBlock`, or a short
//!   read before the peer's end was reported: the socket is empty), after
//!   which the next call says `WouldBlock` without a system call.
//!   [`Attached::detach`] hands the socket back to tokio for the end of
//!   the closing sequence.
//!
//! The TLS handshake is the HTTP layer's business and is complete before a
//! connection is attached; from then on the engine drives the rustls
//! session itself, without a task or a buffer of its own per connection:
//!
//! - **Writing.** `write_vectored` hands the outbox's frames to the session
//!   in one call, which seals them into as few records as fit (16 KiB of
//!   plaintext each) and buffers them; `push` writes the buffered records
//!   with one vectored write. The session's buffer is bounded
//!   ([`TLS_BUFFER_LIMIT`]): the outbox only advances by what the session
//!   accepted, so the outbox's limits and slow-consumer accounting work as
//!   they do on plain TCP, with at most that much more in flight.
//! - **Reading.** [`Attached::try_read`] fills the caller's buffer with
//!   plaintext, reading and decrypting records as needed. A session may hold
//!   decrypted bytes the socket no longer signals, so
//!   [`Attached::readable`] answers yes while plaintext is waiting.
//! - **Records the session makes by itself** (alerts, TLS 1.3 session
//!   tickets and key updates) are written by the next `push`, which every
//!   flush starts with.
//!
//! The plain path is the socket's own calls, one `match` away.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Socket reads into a TLS session per [`Attached::try_read`] that yield
/// no plaintext before it gives up its turn.
const RECORD_READS_PER_CALL: usize = 4;

/// How long closing waits for the socket to take the `close_notify`.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_millis(500);

/// The most encrypted bytes a TLS session holds for its socket: what the
/// session accepts from the outbox beyond what the socket took.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// A connection's byte stream, registered with tokio: before a shard owns
/// it, and while its closing sequence lingers.
pub struct Transport {
    tcp: TcpStream,
    tls: Option<Box<Tls>>,
}

/// A connection's byte stream while its shard owns it, registered with the
/// shard's poll under the connection's key. Owned by one shard thread.
pub(super) struct Attached {
    tcp: Polled,
    /// Boxed: most connections are plain, and every connection pays for
    /// the room inline (docs/architecture.md, *Memory per connection*).
    tls: Option<Box<Tls>>,
}

/// A socket registered with the shard's poll, and what the poll last said
/// of it.
struct Polled {
    /// Non-blocking (tokio made it so), registered through its descriptor.
    io: std::net::TcpStream,
    /// [`READABLE`] and [`WRITABLE`]: set by the shard's poller when the
    /// kernel reports the socket ready (edge-triggered: once per change),
    /// cleared here when a call finds it not ready after all. Both start
    /// set: the first call finds out. [`READ_CLOSED`]: set with the peer's
    /// end (or an error), never cleared.
    ready: Cell<u8>,
}

/// The socket has bytes, an end of stream or an error to read.
const READABLE: u8 = 1;
/// The socket takes writes, or has an error to report.
const WRITABLE: u8 = 2;
/// The peer closed its side, or the socket failed: for good, so reads are
/// never cleared again — the kernel reports the end once, possibly with
/// the last bytes, and only a read after those finds it.
const READ_CLOSED: u8 = 4;

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
    pub fn tls(tcp: TcpStream, session: ServerConnection) -> Self {
        Self {
            tcp,
            tls: Some(Tls::new(session)),
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

    /// Writes what it can of `bufs`: on TCP straight to the socket; with TLS
    /// into the session, sealed into records that [`Transport::push`] then
    /// writes. Returns how many bytes of `bufs` were taken.
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => self.tcp.try_write_vectored(bufs),
            Some(tls) => tls.write_vectored(bufs),
        }
    }

    /// Writes the TLS records the session holds. `Ok(())` once none is
    /// left (always, on TCP); `WouldBlock` while the socket is full.
    pub fn push(&self) -> io::Result<()> {
        match &self.tls {
            None => Ok(()),
            Some(tls) => tls.push(&mut TokioSocket(&self.tcp)),
        }
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

    /// Moves the socket from tokio to the shard's poll (`registry`), its
    /// events named by `token`. Fails only if the kernel refuses the
    /// registration (out of memory, or of epoll watches); the socket is
    /// then closed.
    pub(super) fn attach(self, registry: &Registry, token: Token) -> io::Result<Attached> {
        let Self { tcp, tls } = self;
        let io = tcp.into_std()?;
        registry.register(
            &mut SourceFd(&io.as_raw_fd()),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Attached {
            tcp: Polled {
                io,
                ready: Cell::new(READABLE | WRITABLE),
            },
            tls,
        })
    }
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("peer", &self.tcp.io.peer_addr().ok())
            .field("tls", &self.tls.is_some())
            .field("ready", &self.tcp.ready.get())
            .finish()
    }
}

impl Attached {
    /// Notes what the shard's poll reported of the socket: readable,
    /// writable, closed for reading (by the peer, or a failure: for good).
    pub(super) fn mark_ready(&self, readable: bool, writable: bool, read_closed: bool) {
        let bits = (u8::from(readable || read_closed) * READABLE)
            | (u8::from(writable) * WRITABLE)
            | (u8::from(read_closed) * READ_CLOSED);
        self.tcp.ready.set(self.tcp.ready.get() | bits);
    }

    /// Whether [`Attached::try_read`] may have something: the socket was
    /// reported readable and no read has found it empty since, or the TLS
    /// session holds plaintext.
    pub(super) fn readable(&self) -> bool {
        self.tcp.is(READABLE) || self.tls.as_ref().is_some_and(|tls| tls.plaintext.get() > 0)
    }

    /// Whether the socket may take writes: it was reported writable and no
    /// write has found it full since.
    pub(super) fn writable(&self) -> bool {
        self.tcp.is(WRITABLE)
    }

    /// Reads plaintext into `buf`. `Ok(0)` is the end of the stream (a TCP
    /// FIN, or a TLS `close_notify`); a TLS record that fails to decrypt or
    /// parse is `InvalidData` (its alert goes out with the next push).
    pub(super) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.tcp).read(buf),
            Some(tls) => tls.read(&mut &self.tcp, buf),
        }
    }

    /// Writes what it can of `bufs` (see [`Transport::write_vectored`]).
    pub(super) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.tcp).write_vectored(bufs),
            Some(tls) => tls.write_vectored(bufs),
        }
    }

    /// Whether the TLS session holds records the socket has not taken.
    pub(super) fn has_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.has_pending())
    }

    /// Writes the TLS records the session holds (see [`Transport::push`]).
    pub(super) fn push(&self) -> io::Result<()> {
        match &self.tls {
            None => Ok(()),
            Some(tls) => tls.push(&mut &self.tcp),
        }
    }

    /// Moves the socket back from the shard's poll to tokio, for a closing
    /// sequence's waits. Events already queued for it name a key the
    /// shard no longer holds, and are ignored.
    pub(super) fn detach(self, registry: &Registry) -> io::Result<Transport> {
        let Self {
            tcp: Polled { io, .. },
            tls,
        } = self;
        // A socket left registered only sends events nobody reads.
        let _ = registry.deregister(&mut SourceFd(&io.as_raw_fd()));
        let tcp = TcpStream::from_std(io)?;
        Ok(Transport { tcp, tls })
    }
}

impl Polled {
    fn is(&self, bit: u8) -> bool {
        self.ready.get() & bit != 0
    }

    fn clear(&self, bit: u8) {
        self.ready.set(self.ready.get() & !bit);
    }
}

/// Non-blocking reads that keep the readiness bit true: cleared when a read
/// finds the socket empty (`WouldBlock`, or a plain short read before any
/// end was reported), and without a system call while it is clear.
impl Read for &Polled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.is(READABLE) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let read = (&self.io).read(buf);
        let drained = match &read {
            // A stream socket that fills less than the buffer had no more
            // at that moment; bytes that arrive later come with an event,
            // but an end already reported does not come again.
            Ok(n) => *n > 0 && *n < buf.len() && !self.is(READ_CLOSED),
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if drained {
            self.clear(READABLE);
        }
        read
    }
}

/// Non-blocking writes that keep the readiness bit true (see `Read`). Only
/// `WouldBlock` clears it: a short write is followed by one more call.
impl Write for &Polled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.is(WRITABLE) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let written = (&self.io).write_vectored(bufs);
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
        {
            self.clear(WRITABLE);
        }
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tls {
    fn new(mut session: ServerConnection) -> Box<Self> {
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let plaintext = session
            .process_new_packets()
            .map_or(0, |state| state.plaintext_bytes_to_read());
        Box::new(Self {
            session: RefCell::new(session),
            plaintext: Cell::new(plaintext),
        })
    }

    /// Reads plaintext into `buf`, reading records from `socket` as needed.
    fn read(&self, socket: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        // Records that decrypt to nothing (key updates, empty records) end
        // the call after a few, as if the socket were drained: its readiness
        // stays set, so the driver polls the connection again.
        for _ in 0..RECORD_READS_PER_CALL {
            match session.reader().read(buf) {
                Ok(n) => {
                    self.plaintext.set(self.plaintext.get().saturating_sub(n));
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.plaintext.set(0);
            if session.read_tls(socket)? == 0 {
                return Ok(0);
            }
            let state = session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.plaintext.set(state.plaintext_bytes_to_read());
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Ok(0);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.session.borrow_mut().writer().write_vectored(bufs)
    }

    fn has_pending(&self) -> bool {
        self.session.borrow().wants_write()
    }

    /// Writes the records the session holds to `socket`.
    fn push(&self, socket: &mut dyn Write) -> io::Result<()> {
        let mut session = self.session.borrow_mut();
        while session.wants_write() {
            if session.write_tls(socket)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// A tokio socket as `io::Write` for rustls: non-blocking, vectored writes.
struct TokioSocket<'a>(&'a TcpStream);

impl Write for TokioSocket<'_> {
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
