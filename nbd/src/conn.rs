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

use sanshim_blockdev::BlockDevice;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zerocopy::IntoBytes;

use crate::Config;
use crate::execute::execute;
use crate::negotiate::{ExportParams, MAX_OPTION_DATA, Negotiation, NegotiationError, Step};
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
    /// The handshake ended without an export (unknown flags or export name).
    #[error("handshake refused: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The client broke framing (bad magic).
    #[error("protocol violation by the client: {0}")]
    Protocol(#[from] WireError),
}

/// Room in front of read data for the largest reply header (chunk header + offset).
const HEADROOM: usize = ChunkHeader::LEN + 8;

/// A reply ready to send, holding the resources of its request until it is written.
struct Outgoing {
    bytes: Vec<u8>,
    start: usize,
    _slot: OwnedSemaphorePermit,
    _data: Option<OwnedSemaphorePermit>,
}

/// What one connection serves and how.
pub(crate) struct Target<'a> {
    pub params: &'a ExportParams,
    pub device: Arc<dyn BlockDevice>,
    pub structured: bool,
}

/// Runs the handshake; returns the chosen export and whether structured replies are on, or
/// `None` when the client aborted.
pub(crate) async fn handshake<S>(
    stream: &mut S,
    exports: &[ExportParams],
) -> Result<Option<(usize, bool)>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(Negotiation::greeting().as_bytes()).await?;
    stream.flush().await?;
    let mut n = Negotiation::new(exports);
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
            } => (reply, Some(Some((export, structured)))),
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
pub(crate) async fn transmit<S>(
    stream: S,
    target: Target<'_>,
    config: &Config,
    shutdown: &Shutdown,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_replies(wr, rx));
    let mut reader = Reader {
        session: target.params.session(target.structured),
        device: target.device,
        slots: Arc::new(Semaphore::new(config.max_inflight_requests.max(1) as usize)),
        bytes: Arc::new(Semaphore::new(config.connection_buffer_bytes as usize)),
        tx,
    };
    let result = loop {
        let step = tokio::select! {
            biased;
            () = shutdown.wait() => break Ok(()),
            step = reader.next(&mut rd) => step,
        };
        match step {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    drop(reader);
    let written = writer.await.map_err(io::Error::other)?;
    result.and(written.map_err(ConnectionError::from))
}

struct Reader {
    session: Session,
    device: Arc<dyn BlockDevice>,
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Reader {
    /// Reads and dispatches one request; `Ok(false)` when the connection should close.
    async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<bool, ConnectionError> {
        let mut header = [0u8; Request::LEN];
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let request = Request::parse(&header)?;
        let checked = check(&request, &self.session);
        let slot = acquire(&self.slots, 1).await?;
        match checked.verdict {
            Err(refusal) => {
                tracing::debug!(?request, reason = refusal.reason, "request refused");
                skip(rd, u64::from(checked.payload)).await?;
                let bytes = error_reply(&checked, refusal, self.session.structured);
                Ok(self.tx.send(Outgoing::new(bytes, 0, slot, None)).is_ok())
            }
            Ok(Action::Disconnect) => Ok(false),
            Ok(action) => {
                self.dispatch(rd, checked, action, slot).await?;
                Ok(!self.tx.is_closed())
            }
        }
    }

    /// Reads a write's payload or allocates a read's buffer, then runs the request in its own
    /// task.
    async fn dispatch<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        checked: Checked,
        action: Action,
        slot: OwnedSemaphorePermit,
    ) -> io::Result<()> {
        let length = match action {
            Action::Read { length, .. } | Action::Write { length, .. } => length,
            _ => 0,
        };
        let data = match length {
            0 => None,
            n => Some(acquire(&self.bytes, n).await?),
        };
        let (buf, start) = match action {
            Action::Write { .. } => (read_payload(rd, length as usize).await?, 0),
            Action::Read { .. } => (vec![0u8; HEADROOM + length as usize], HEADROOM),
            _ => (Vec::new(), 0),
        };
        let job = Job {
            checked,
            action,
            buf,
            start,
            slot,
            data,
        };
        tokio::spawn(run(
            job,
            Arc::clone(&self.device),
            self.tx.clone(),
            self.session.structured,
        ));
        Ok(())
    }
}

/// One accepted request with its buffer and the resources it holds.
struct Job {
    checked: Checked,
    action: Action,
    buf: Vec<u8>,
    start: usize,
    slot: OwnedSemaphorePermit,
    data: Option<OwnedSemaphorePermit>,
}

/// Runs a request against the device and queues its reply.
async fn run(
    job: Job,
    device: Arc<dyn BlockDevice>,
    tx: mpsc::UnboundedSender<Outgoing>,
    structured: bool,
) {
    let Job {
        checked,
        action,
        mut buf,
        start,
        slot,
        data,
    } = job;
    let result = execute(&*device, action, buf.get_mut(start..).unwrap_or_default()).await;
    let out = match (result, action) {
        (Ok(()), Action::Read { offset, length }) => {
            let start = read_reply(&mut buf, checked.cookie, offset, length, structured);
            Outgoing::new(buf, start, slot, data)
        }
        (Ok(()), _) => {
            let header = SimpleReplyHeader::new(checked.cookie, None);
            Outgoing::new(header.as_bytes().to_vec(), 0, slot, None)
        }
        (Err(e), _) => {
            tracing::debug!(?action, error = %e, "request failed");
            let refusal = Refusal {
                errno: Errno::from(e),
                reason: e.context(),
            };
            Outgoing::new(error_reply(&checked, refusal, structured), 0, slot, None)
        }
    };
    // A closed channel means the connection is gone; the reply has no one to go to.
    let _ = tx.send(out);
}

impl Outgoing {
    fn new(
        bytes: Vec<u8>,
        start: usize,
        slot: OwnedSemaphorePermit,
        data: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Outgoing {
            bytes,
            start,
            _slot: slot,
            _data: data,
        }
    }
}

/// Fills the reply header in front of read data in `buf`; returns where the reply starts.
fn read_reply(buf: &mut [u8], cookie: u64, offset: u64, length: u32, structured: bool) -> usize {
    if !structured {
        let start = HEADROOM - SimpleReplyHeader::LEN;
        buf[start..HEADROOM].copy_from_slice(SimpleReplyHeader::new(cookie, None).as_bytes());
        return start;
    }
    if length == 0 {
        // OFFSET_DATA needs at least one byte; an empty read is answered with NONE.
        let header = ChunkHeader::new(cookie, ChunkType::NONE, true, 0);
        buf[HEADROOM - ChunkHeader::LEN..].copy_from_slice(header.as_bytes());
        return HEADROOM - ChunkHeader::LEN;
    }
    let header = ChunkHeader::new(cookie, ChunkType::OFFSET_DATA, true, length + 8);
    buf[..ChunkHeader::LEN].copy_from_slice(header.as_bytes());
    buf[ChunkHeader::LEN..HEADROOM].copy_from_slice(&offset.to_be_bytes());
    0
}

/// The error reply for a request: a structured error chunk when negotiated (required for
/// reads, preferred for the rest), else a simple reply with no data.
fn error_reply(checked: &Checked, refusal: Refusal, structured: bool) -> Vec<u8> {
    if structured {
        let mut out = Vec::with_capacity(ChunkHeader::LEN + 6 + refusal.reason.len());
        emit_error_chunk(&mut out, checked.cookie, refusal.errno, refusal.reason);
        out
    } else {
        SimpleReplyHeader::new(checked.cookie, Some(refusal.errno))
            .as_bytes()
            .to_vec()
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(out) = rx.recv().await {
        w.write_all(out.bytes.get(out.start..).unwrap_or_default())
            .await?;
        drop(out);
        if rx.is_empty() {
            w.flush().await?;
        }
    }
    w.flush().await?;
    w.shutdown().await
}

/// Takes `n` permits (the semaphores are never closed, so the error cannot happen).
async fn acquire(sem: &Arc<Semaphore>, n: u32) -> io::Result<OwnedSemaphorePermit> {
    Arc::clone(sem)
        .acquire_many_owned(n)
        .await
        .map_err(io::Error::other)
}

/// Reads exactly `len` bytes, growing the buffer as data arrives so that a client announcing
/// a large write and sending nothing holds no memory for it.
async fn read_payload<R: AsyncRead + Unpin>(rd: &mut R, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    while buf.len() < len {
        let room = (len - buf.len()).min(buf.len().max(64 * 1024));
        buf.reserve_exact(room);
        let limit = (len - buf.len()) as u64;
        if (&mut *rd).take(limit).read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

/// Reads and drops `n` bytes.
async fn skip<R: AsyncRead + Unpin>(rd: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut (&mut *rd).take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
