//! The tokio driver of one NBD connection: moves bytes between the socket and the pure
//! [`Negotiation`] and [`check`], runs requests concurrently and bounds what they hold.
//!
//! Transmission runs as a reader (this task: headers, payloads, one spawned task per request)
//! and a writer task (replies in completion order, flushed when the queue runs dry). Each
//! request holds a slot of `max_inflight_requests` and its data holds bytes of
//! `connection_buffer_bytes` until its reply is written; when either runs out the reader stops
//! reading, so a client that does not read replies stalls only itself. A shutdown or
//! `NBD_CMD_DISC` stops the reader; in-flight requests still get their replies, then the
//! connection closes.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, Bytewise};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zerocopy::IntoBytes;

use crate::Config;
use crate::execute::{Payload, execute};
use crate::negotiate::{ExportParams, MAX_OPTION_DATA, Negotiation, NegotiationError, Step};
use crate::pool::BufferPool;
use crate::request::{Action, Checked, Refusal, Session, check};
use crate::server::Shutdown;
use crate::wire::{
    ChunkHeader, ChunkType, Errno, OptionHeader, Request, SimpleReplyHeader, WireError,
    emit_error_chunk,
};

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed or the client went away mid-message.
    #[error("connection i/o: {0}")]
    Io(#[from] io::Error),
    /// The client did not finish the handshake in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The client sent no request for the idle timeout with none in flight.
    #[error("idle for {0:?}: closed")]
    IdleTimeout(Duration),
    /// The handshake ended without an export (unknown flags or export name).
    #[error("handshake refused: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The client broke framing (bad magic).
    #[error("protocol violation by the client: {0}")]
    Protocol(#[from] WireError),
}

/// Room for the largest reply header (chunk header + offset).
const HEADROOM: usize = ChunkHeader::LEN + 8;

/// A reply ready to send, holding the resources of its request until it is written: a header
/// (or a whole small reply) and, for a read, the very buffer the device filled.
struct Outgoing {
    head: Head,
    data: Option<BytesMut>,
    _ticket: Ticket,
}

/// What one request holds from its header until its reply is written or dropped: a slot of
/// `max_inflight_requests`, its data's share of `connection_buffer_bytes`, and its place in
/// the server's gauges.
struct Ticket {
    _slot: OwnedSemaphorePermit,
    data: Option<OwnedSemaphorePermit>,
    counters: Arc<Counters>,
}

/// The bytes of a reply before its data.
enum Head {
    /// A reply header built in place.
    Inline([u8; HEADROOM], usize),
    /// A longer reply (an error chunk with its message).
    Owned(Vec<u8>),
}

/// What one connection serves and how.
pub(crate) struct Target<'a, D> {
    pub params: &'a ExportParams,
    pub device: Arc<Bytewise<D>>,
    pub structured: bool,
    /// Whether the client agreed to the advertised block sizes (else any alignment is served).
    pub block_size_agreed: bool,
    /// Close the connection after this long without requests (none for the kernel).
    pub idle_timeout: Option<Duration>,
    pub counters: Arc<Counters>,
}

/// What the server's connections moved and hold; gauges go up and down, the rest only up.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests dispatched to the device.
    pub requests: AtomicU64,
    /// Read payload bytes copied in userspace into a reply batch (small replies only).
    pub copied: AtomicU64,
    /// Gauge: connections being served (handshake or transmission).
    pub connections: AtomicU64,
    /// Gauge: requests read whose reply is not yet written (or dropped with its connection).
    pub in_flight: AtomicU64,
    /// The most `in_flight` has been.
    pub peak_in_flight: AtomicU64,
    /// Gauge: request and reply data held for those requests.
    pub held_bytes: AtomicU64,
    /// The most `held_bytes` has been.
    pub peak_held_bytes: AtomicU64,
    /// Gauge: request tasks running (at the device or queueing a reply).
    pub tasks: AtomicU64,
}

/// Replies with data up to this size are copied into the write batch.
const COPY_LIMIT: usize = 4096;
/// A write batch is sent once it holds this much.
const BATCH_BYTES: usize = 64 * 1024;

/// What a handshake settled.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Negotiated {
    /// The export's index.
    pub export: usize,
    /// Whether structured replies are on.
    pub structured: bool,
    /// Whether the client agreed to the advertised block sizes.
    pub block_size_agreed: bool,
}

/// Runs the handshake; returns what was settled, or `None` when the client aborted. With
/// `refusal`, every option is refused with it ([`Negotiation::refusing`]).
pub(crate) async fn handshake<S>(
    stream: &mut S,
    exports: &[ExportParams],
    refusal: Option<&'static str>,
) -> Result<Option<Negotiated>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(Negotiation::greeting().as_bytes()).await?;
    stream.flush().await?;
    let mut n = match refusal {
        Some(reason) => Negotiation::refusing(exports, reason),
        None => Negotiation::new(exports),
    };
    let mut flags = [0u8; 4];
    stream.read_exact(&mut flags).await?;
    n.handle_client_flags(u32::from_be_bytes(flags))?;
    loop {
        let mut header = [0u8; OptionHeader::LEN];
        stream.read_exact(&mut header).await?;
        let (option, len) = OptionHeader::parse(&header)?;
        let step = if len > MAX_OPTION_DATA {
            skip(stream, u64::from(len)).await?;
            n.handle_oversized_option(option)
        } else {
            let mut data = vec![0u8; len as usize];
            stream.read_exact(&mut data).await?;
            n.handle_option(option, &data)
        };
        let (bytes, outcome) = match step {
            Step::Continue(b) => (b, None),
            Step::Close(b) => (b, Some(None)),
            Step::Transmit {
                reply,
                export,
                structured,
                block_size_agreed,
            } => {
                let settled = Negotiated {
                    export,
                    structured,
                    block_size_agreed,
                };
                (reply, Some(Some(settled)))
            }
            Step::Refuse(e) => return Err(e.into()),
        };
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
}

/// Runs the transmission phase until the client disconnects, breaks framing or `shutdown`
/// fires, then waits for the replies of in-flight requests and closes.
pub(crate) async fn transmit<S, D>(
    stream: S,
    target: Target<'_, D>,
    config: &Config,
    shutdown: &Shutdown,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    D: BlockDevice + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let pool = Arc::new(BufferPool::default());
    let writer = tokio::spawn(write_replies(
        wr,
        rx,
        Arc::clone(&target.counters),
        config.reply_timeout,
        Arc::clone(&pool),
    ));
    let slots = config.max_inflight_requests.max(1);
    let mut reader = Reader {
        session: target
            .params
            .session(target.structured, target.block_size_agreed),
        device: target.device,
        counters: target.counters,
        slots: Arc::new(Semaphore::new(slots as usize)),
        slots_total: slots as usize,
        bytes: Arc::new(Semaphore::new(config.connection_buffer_bytes as usize)),
        idle_timeout: target.idle_timeout,
        tx,
        pool,
    };
    let all_slots = Arc::clone(&reader.slots);
    // Ends when the writer does (a client that stopped taking replies, a broken socket), so
    // that the reader does not wait for requests on a connection that is finished.
    let writer_gone = reader.tx.clone();
    let result = loop {
        let step = tokio::select! {
            biased;
            () = shutdown.wait() => break Ok(()),
            () = writer_gone.closed() => break Ok(()),
            step = reader.next(&mut rd) => step,
        };
        match step {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Every sender gone, the writer sends what is queued and ends.
    drop(writer_gone);
    drop(reader);
    let written = writer.await.map_err(io::Error::other);
    // A writer that failed leaves requests running at the device: they still finish (and
    // free their slots) before the connection counts as closed, so that nothing is left
    // pending behind it — a shutdown that goes on to flush and log out waits for them.
    let _all = acquire(&all_slots, slots).await;
    result.and(written?.map_err(ConnectionError::from))
}

struct Reader<D> {
    session: Session,
    device: Arc<Bytewise<D>>,
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
    slots_total: usize,
    bytes: Arc<Semaphore>,
    idle_timeout: Option<Duration>,
    tx: mpsc::UnboundedSender<Outgoing>,
    pool: Arc<BufferPool>,
}

impl<D: BlockDevice + 'static> Reader<D> {
    /// Reads and dispatches one request; `Ok(false)` when the connection should close.
    async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<bool, ConnectionError> {
        let mut header = [0u8; Request::LEN];
        let read = match self.idle_timeout {
            Some(limit) => tokio::select! {
                r = rd.read_exact(&mut header) => r,
                () = self.idle(limit) => return Err(ConnectionError::IdleTimeout(limit)),
            },
            None => rd.read_exact(&mut header).await,
        };
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let request = Request::parse(&header)?;
        let checked = check(&request, &self.session);
        let ticket = Ticket::new(acquire(&self.slots, 1).await?, &self.counters);
        match checked.verdict {
            Err(refusal) => {
                tracing::debug!(?request, reason = refusal.reason, "request refused");
                skip(rd, u64::from(checked.payload)).await?;
                let head = error_reply(&checked, refusal, self.session.structured);
                Ok(self.tx.send(Outgoing::new(head, None, ticket)).is_ok())
            }
            Ok(Action::Disconnect) => Ok(false),
            Ok(action) => {
                self.dispatch(rd, checked, action, ticket).await?;
                Ok(!self.tx.is_closed())
            }
        }
    }

    /// Completes `limit` after the last request in flight was answered (only this reader
    /// takes slots, so none are taken while it waits for a header).
    async fn idle(&self, limit: Duration) {
        // Idle means no request in flight either: a slow device is not an idle client.
        drop(acquire(&self.slots, self.slots_total as u32).await);
        tokio::time::sleep(limit).await;
    }

    /// Takes room for a read's or write's data and reads a write's payload, then runs the
    /// request in its own task.
    async fn dispatch<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        checked: Checked,
        action: Action,
        mut ticket: Ticket,
    ) -> io::Result<()> {
        let length = match action {
            Action::Read { length, .. } | Action::Write { length, .. } => length,
            _ => 0,
        };
        if length > 0 {
            ticket.hold(acquire(&self.bytes, length).await?);
        }
        let payload = match action {
            Action::Write { .. } if length > 0 => {
                Payload::Write(read_payload(rd, length as usize).await?)
            }
            _ => Payload::None,
        };
        let job = Job {
            checked,
            action,
            payload,
            _task: Gauge::up(&self.counters, |c| &c.tasks),
            ticket,
        };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run(
            job,
            Arc::clone(&self.device),
            self.tx.clone(),
            self.session.structured,
            Arc::clone(&self.pool),
        ));
        Ok(())
    }
}

/// One accepted request with its payload and the resources it holds.
struct Job {
    checked: Checked,
    action: Action,
    payload: Payload,
    ticket: Ticket,
    /// Counts the task from its spawning to its end.
    _task: Gauge,
}

/// Runs a request against the device and queues its reply.
async fn run<D: BlockDevice>(
    job: Job,
    device: Arc<Bytewise<D>>,
    tx: mpsc::UnboundedSender<Outgoing>,
    structured: bool,
    pool: Arc<BufferPool>,
) {
    let Job {
        checked,
        action,
        payload,
        ticket,
        _task,
    } = job;
    let result = execute(&device, action, payload, &pool).await;
    let out = match (result, action) {
        (Ok(buf), Action::Read { offset, length }) => {
            let head = read_reply(checked.cookie, offset, length, structured);
            Outgoing::new(head, buf, ticket)
        }
        (Ok(_), _) => {
            let header = SimpleReplyHeader::new(checked.cookie, None);
            Outgoing::new(inline(header.as_bytes()), None, ticket.without_data())
        }
        (Err(e), _) => {
            tracing::debug!(?action, error = %e, "request failed");
            let refusal = Refusal {
                errno: Errno::from(e),
                reason: e.context(),
            };
            let head = error_reply(&checked, refusal, structured);
            Outgoing::new(head, None, ticket.without_data())
        }
    };
    // A closed channel means the connection is gone; the reply has no one to go to.
    let _ = tx.send(out);
}

impl Outgoing {
    fn new(head: Head, data: Option<BytesMut>, ticket: Ticket) -> Self {
        Outgoing {
            head,
            data,
            _ticket: ticket,
        }
    }
}

impl Ticket {
    fn new(slot: OwnedSemaphorePermit, counters: &Arc<Counters>) -> Self {
        raise(&counters.in_flight, &counters.peak_in_flight, 1);
        Ticket {
            _slot: slot,
            data: None,
            counters: Arc::clone(counters),
        }
    }

    /// Adds the permit for the request's data.
    fn hold(&mut self, data: OwnedSemaphorePermit) {
        let c = &self.counters;
        raise(&c.held_bytes, &c.peak_held_bytes, data.num_permits() as u64);
        self.release_data();
        self.data = Some(data);
    }

    /// Gives back the data's room early: a reply without data needs none.
    fn without_data(mut self) -> Self {
        self.release_data();
        self
    }

    fn release_data(&mut self) {
        if let Some(data) = self.data.take() {
            let n = data.num_permits() as u64;
            self.counters.held_bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.release_data();
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One unit of a gauge of [`Counters`], given back on drop.
pub(crate) struct Gauge {
    counters: Arc<Counters>,
    gauge: fn(&Counters) -> &AtomicU64,
}

impl Gauge {
    pub(crate) fn up(counters: &Arc<Counters>, gauge: fn(&Counters) -> &AtomicU64) -> Self {
        gauge(counters).fetch_add(1, Ordering::Relaxed);
        Gauge {
            counters: Arc::clone(counters),
            gauge,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.gauge)(&self.counters).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds `n` to a gauge and keeps its peak.
fn raise(gauge: &AtomicU64, peak: &AtomicU64, n: u64) {
    let now = gauge.fetch_add(n, Ordering::Relaxed) + n;
    peak.fetch_max(now, Ordering::Relaxed);
}

impl Head {
    fn bytes(&self) -> &[u8] {
        match self {
            Head::Inline(b, len) => b.get(..*len).unwrap_or_default(),
            Head::Owned(v) => v,
        }
    }
}

/// A short reply header held inline.
fn inline(bytes: &[u8]) -> Head {
    let mut b = [0u8; HEADROOM];
    let len = bytes.len().min(HEADROOM);
    b[..len].copy_from_slice(&bytes[..len]);
    Head::Inline(b, len)
}

/// The reply header in front of read data.
fn read_reply(cookie: u64, offset: u64, length: u32, structured: bool) -> Head {
    if !structured {
        return inline(SimpleReplyHeader::new(cookie, None).as_bytes());
    }
    if length == 0 {
        // OFFSET_DATA needs at least one byte; an empty read is answered with NONE.
        return inline(ChunkHeader::new(cookie, ChunkType::NONE, true, 0).as_bytes());
    }
    let header = ChunkHeader::new(cookie, ChunkType::OFFSET_DATA, true, length + 8);
    let mut b = [0u8; HEADROOM];
    b[..ChunkHeader::LEN].copy_from_slice(header.as_bytes());
    b[ChunkHeader::LEN..].copy_from_slice(&offset.to_be_bytes());
    Head::Inline(b, HEADROOM)
}

/// The error reply for a request: a structured error chunk when negotiated (required for
/// reads, preferred for the rest), else a simple reply with no data.
fn error_reply(checked: &Checked, refusal: Refusal, structured: bool) -> Head {
    if structured {
        let mut out = Vec::with_capacity(ChunkHeader::LEN + 6 + refusal.reason.len());
        emit_error_chunk(&mut out, checked.cookie, refusal.errno, refusal.reason);
        Head::Owned(out)
    } else {
        inline(SimpleReplyHeader::new(checked.cookie, Some(refusal.errno)).as_bytes())
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    counters: Arc<Counters>,
    limit: Duration,
    pool: Arc<BufferPool>,
) -> io::Result<()> {
    // Each write gets `limit` to go out: a client that stops reading replies would otherwise
    // hold the connection (and a graceful shutdown) forever.
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(mut out) = next.take() {
            let data = out.data.as_deref().unwrap_or_default();
            batch.extend_from_slice(out.head.bytes());
            if data.len() <= COPY_LIMIT {
                // Small replies are gathered, so that many go out in one write.
                batch.extend_from_slice(data);
                counters
                    .copied
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            } else {
                // What is gathered and the data, straight from the device's buffer, in one
                // vectored write.
                let mut reply = Buf::chain(&batch[..], data);
                within(limit, wr.write_all_buf(&mut reply)).await?;
                batch.clear();
            }
            // The data is out (or copied): its buffer serves a later read.
            if let Some(data) = out.data.take() {
                pool.give(data);
            }
            drop(out);
            if batch.len() >= BATCH_BYTES {
                within(limit, wr.write_all(&batch)).await?;
                batch.clear();
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            within(limit, wr.write_all(&batch)).await?;
            batch.clear();
        }
        within(limit, wr.flush()).await?;
    }
    within(limit, wr.shutdown()).await
}

/// `io` if it completes within `limit`; else a `TimedOut` error naming the cause.
async fn within(limit: Duration, io: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    match tokio::time::timeout(limit, io).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took no reply for {limit:?}: it stopped reading; dropped"),
        )),
    }
}

/// Takes `n` permits (the semaphores are never closed, so the error cannot happen).
async fn acquire(sem: &Arc<Semaphore>, n: u32) -> io::Result<OwnedSemaphorePermit> {
    Arc::clone(sem)
        .acquire_many_owned(n)
        .await
        .map_err(io::Error::other)
}

/// Reads exactly `len` bytes. Up to 1 MiB is read into one buffer of its final size (no
/// copy on the way to the device); beyond that the buffer grows as data arrives, so that a
/// client announcing a large write and sending nothing holds little memory for it.
async fn read_payload<R: AsyncRead + Unpin>(rd: &mut R, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    while buf.len() < len {
        let room = (len - buf.len()).min(buf.len().max(64 * 1024));
        buf.reserve_exact(room);
        let limit = (len - buf.len()) as u64;
        if (&mut *rd).take(limit).read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads and drops `n` bytes.
async fn skip<R: AsyncRead + Unpin>(rd: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut (&mut *rd).take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
