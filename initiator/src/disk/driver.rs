//! The tokio driver of a [`Session`]: the one task that owns the socket's read half, the
//! timers and the re-login, and moves PDUs, submissions and completions. It makes no protocol
//! decision; everything it learns goes to the session, and it does what
//! [`Session::poll_event`] says.
//!
//! Data-In segments land straight in the command's buffer: the header is decoded with
//! [`Codec::decode_header`], the session says where the data goes, the bytes are copied from
//! what is already buffered and the rest is read from the socket into place, and the CRC32C
//! data digest is computed over the landed bytes. Writes go through a writer task that
//! sends each PDU's header, data and trailer (from [`Codec::encode_parts`]) in vectored writes,
//! so that reading never waits on a full send buffer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::login::LoginConfig;
use crate::session::{
    Command, ConnectionFailure, Event, Response, Session, SessionStart, TaskError, TaskId,
};
use crate::transport::{LoggedIn, LoginPolicy, Portal, SessionError};
use crate::wire::{Codec, DIGEST_LEN, DecodeError, Opcode, Pdu, padding, read_digest};

/// What callers send the driver.
pub(crate) enum Request {
    /// Run a command.
    Command(Command, oneshot::Sender<Result<Response, TaskError>>),
    /// Log out and stop.
    Close(oneshot::Sender<()>),
}

/// How to log in again.
pub(crate) struct Relogin {
    pub portal: Portal,
    pub config: LoginConfig,
    pub policy: LoginPolicy,
    /// Counts successful re-logins.
    pub count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

type LoginFuture = Pin<Box<dyn Future<Output = Result<LoggedIn, SessionError>> + Send>>;

/// The connection in use.
struct Link {
    reader: OwnedReadHalf,
    codec: Codec,
    rbuf: BytesMut,
    writer: mpsc::UnboundedSender<Vec<Bytes>>,
    writer_done: oneshot::Receiver<()>,
}

/// Where the driver stands with its connection.
enum Conn {
    Up(Link),
    Waiting(Instant),
    LoggingIn(LoginFuture),
}

/// Runs the session until it has logged out (or its owner went away and it logged out).
pub(crate) async fn run(
    mut session: Session,
    stream: TcpStream,
    codec: Codec,
    rbuf: BytesMut,
    mut requests: mpsc::UnboundedReceiver<Request>,
    relogin: Relogin,
) {
    let mut conn = Conn::Up(Link::new(stream, codec, rbuf));
    let mut waiters: HashMap<TaskId, oneshot::Sender<Result<Response, TaskError>>> = HashMap::new();
    let mut closers: Vec<oneshot::Sender<()>> = Vec::new();
    let mut requests_open = true;
    loop {
        flush(&mut session, &mut conn);
        while let Some((id, result)) = session.poll_completion() {
            if let Some(w) = waiters.remove(&id) {
                let _ = w.send(result);
            }
        }
        let mut done = false;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Reconnect { reason, delay } => {
                    info!(%reason, ?delay, "reconnecting");
                    conn = Conn::Waiting(Instant::now() + delay);
                }
                Event::LoggedOut => done = true,
            }
        }
        if done {
            break;
        }
        let timeout = session.poll_timeout();
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let now = Instant::now;
        match &mut conn {
            Conn::Up(link) => tokio::select! {
                r = requests.recv(), if requests_open => {
                    handle_request(&mut session, r, &mut waiters, &mut closers, &mut requests_open);
                }
                r = read_more(&mut link.reader, &mut link.rbuf) => match r {
                    Ok(()) => process_input(&mut session, link).await,
                    Err(reason) => session.handle_connection_lost(reason, now()),
                },
                _ = &mut link.writer_done => session.handle_connection_lost(ConnectionFailure::Io, now()),
                () = sleep => session.handle_timeout(now()),
            },
            Conn::Waiting(at) => {
                let at = *at;
                tokio::select! {
                    r = requests.recv(), if requests_open => {
                        handle_request(&mut session, r, &mut waiters, &mut closers, &mut requests_open);
                    }
                    () = tokio::time::sleep_until(at.into()) => {
                        let (portal, config, policy) =
                            (relogin.portal.clone(), relogin.config.clone(), relogin.policy.clone());
                        conn = Conn::LoggingIn(Box::pin(async move {
                            crate::transport::login(&portal, config, &policy).await
                        }));
                    }
                    () = sleep => session.handle_timeout(now()),
                }
            }
            Conn::LoggingIn(fut) => tokio::select! {
                r = requests.recv(), if requests_open => {
                    handle_request(&mut session, r, &mut waiters, &mut closers, &mut requests_open);
                }
                r = fut => match r {
                    Ok(logged) => {
                        let start = SessionStart::from_established(&logged.established);
                        info!(portal = %logged.portal, "session re-established");
                        relogin.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (stream, codec, rbuf) = logged.connection.into_parts();
                        conn = Conn::Up(Link::new(stream, codec, rbuf));
                        session.handle_connected(&start, now());
                    }
                    Err(e) => {
                        warn!(error = %e, "re-login failed");
                        conn = Conn::Waiting(Instant::now());
                        session.handle_login_failed(now());
                    }
                },
                () = sleep => session.handle_timeout(now()),
            },
        }
    }
    for w in closers {
        let _ = w.send(());
    }
    for (_, w) in waiters {
        let _ = w.send(Err(TaskError::SessionClosed));
    }
    debug!("session driver finished");
}

fn handle_request(
    session: &mut Session,
    request: Option<Request>,
    waiters: &mut HashMap<TaskId, oneshot::Sender<Result<Response, TaskError>>>,
    closers: &mut Vec<oneshot::Sender<()>>,
    open: &mut bool,
) {
    let now = Instant::now();
    match request {
        Some(Request::Command(cmd, reply)) => match session.submit(cmd, now) {
            Ok(id) => {
                waiters.insert(id, reply);
            }
            Err(_) => {
                let _ = reply.send(Err(TaskError::SessionClosed));
            }
        },
        Some(Request::Close(reply)) => {
            closers.push(reply);
            session.close(now);
        }
        None => {
            // Every handle is gone: log out.
            *open = false;
            session.close(now);
        }
    }
}

/// Hands queued PDUs to the writer task (dropped while there is no connection).
fn flush(session: &mut Session, conn: &mut Conn) {
    let Conn::Up(link) = conn else {
        while session.poll_transmit().is_some() {}
        return;
    };
    let mut batch = Vec::new();
    while let Some(pdu) = session.poll_transmit() {
        let parts = link.codec.encode_parts(&pdu);
        batch.push(parts.header);
        if !parts.data.is_empty() {
            batch.push(parts.data);
        }
        if !parts.trailer.is_empty() {
            batch.push(parts.trailer);
        }
    }
    if !batch.is_empty() {
        // A closed writer shows up as `writer_done`.
        let _ = link.writer.send(batch);
    }
}

async fn read_more(
    reader: &mut OwnedReadHalf,
    rbuf: &mut BytesMut,
) -> Result<(), ConnectionFailure> {
    rbuf.reserve(64 * 1024);
    match reader.read_buf(rbuf).await {
        Ok(0) => Err(ConnectionFailure::Closed),
        Ok(_) => Ok(()),
        Err(_) => Err(ConnectionFailure::Io),
    }
}

/// Feeds every whole PDU in the buffer to the session, landing Data-In segments in place.
async fn process_input(session: &mut Session, link: &mut Link) {
    loop {
        let info = match link.codec.decode_header(&link.rbuf) {
            Ok(Some(info)) => info,
            Ok(None) => return,
            Err(e) => {
                return session
                    .handle_connection_lost(ConnectionFailure::Decode(e), Instant::now());
            }
        };
        if info.opcode == Opcode::DATA_IN && info.data_len > 0 {
            if let Err(reason) = land_data_in(session, link, &info).await {
                return session.handle_connection_lost(reason, Instant::now());
            }
            if !session.is_connected() {
                return;
            }
        } else {
            match link.codec.decode(&mut link.rbuf) {
                Ok(Some(pdu)) => session.handle_pdu(pdu, Instant::now()),
                Ok(None) => return,
                Err(e) => {
                    return session
                        .handle_connection_lost(ConnectionFailure::Decode(e), Instant::now());
                }
            }
        }
        if !session.is_connected() {
            return;
        }
        // Answer R2Ts and pings without waiting for the rest of the buffer.
        let mut conn_batch = Vec::new();
        while let Some(pdu) = session.poll_transmit() {
            let parts = link.codec.encode_parts(&pdu);
            conn_batch.extend(
                [parts.header, parts.data, parts.trailer]
                    .into_iter()
                    .filter(|b| !b.is_empty()),
            );
        }
        if !conn_batch.is_empty() {
            let _ = link.writer.send(conn_batch);
        }
    }
}

/// Reads one Data-In whose header is at the front of the buffer, its segment straight into
/// the command's buffer.
async fn land_data_in(
    session: &mut Session,
    link: &mut Link,
    info: &crate::wire::HeaderInfo,
) -> Result<(), ConnectionFailure> {
    let header = match link
        .rbuf
        .get(info.ahs_range())
        .map(|ahs| Pdu::parse_header(&info.bhs, ahs))
    {
        Some(Ok(Pdu::DataIn(d))) => d,
        Some(Err(e)) => return Err(ConnectionFailure::Decode(DecodeError::Invalid(e))),
        _ => {
            return Err(ConnectionFailure::PeerMisbehaved(
                "Data-In header did not parse as one",
            ));
        }
    };
    let itt = header.itt;
    link.rbuf.advance(info.header_len);
    let len = info.data_len;
    let Ok(landing) = session.begin_data_in(header, len, Instant::now()) else {
        // The session already failed the connection; the data is never delivered.
        return Ok(());
    };
    let dst = session.landing_buffer(&landing);
    if dst.len() != len {
        return Err(ConnectionFailure::PeerMisbehaved(
            "Data-In landing vanished",
        ));
    }
    let have = link.rbuf.len().min(len);
    if let (Some(d), Some(s)) = (dst.get_mut(..have), link.rbuf.get(..have)) {
        d.copy_from_slice(s);
    }
    link.rbuf.advance(have);
    if let Some(rest) = dst.get_mut(have..) {
        if !rest.is_empty() {
            link.reader
                .read_exact(rest)
                .await
                .map_err(|_| ConnectionFailure::Io)?;
        }
    }
    let pad = padding(len);
    let trailer = pad + if info.has_data_digest { DIGEST_LEN } else { 0 };
    while link.rbuf.len() < trailer {
        read_more(&mut link.reader, &mut link.rbuf).await?;
    }
    if info.has_data_digest {
        let dst = session.landing_buffer(&landing);
        let crc = crc32c::crc32c_append(crc32c::crc32c(dst), &[0u8; 3][..pad]);
        let actual = link
            .rbuf
            .get(pad..pad + DIGEST_LEN)
            .and_then(|d| d.first_chunk::<DIGEST_LEN>())
            .map_or(0, read_digest);
        if crc != actual {
            link.rbuf.advance(trailer);
            return Err(ConnectionFailure::Decode(DecodeError::DataDigest {
                itt,
                expected: crc,
                actual,
            }));
        }
    }
    link.rbuf.advance(trailer);
    session.finish_data_in(landing, Instant::now());
    Ok(())
}

impl Link {
    fn new(stream: TcpStream, codec: Codec, rbuf: BytesMut) -> Link {
        let (reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = write_loop(writer, rx).await {
                debug!(error = %e, "writer stopped");
            }
            let _ = done_tx.send(());
        });
        Link {
            reader,
            codec,
            rbuf,
            writer: tx,
            writer_done: done_rx,
        }
    }
}

/// Sends batches of buffers with vectored writes until the channel closes.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<Bytes>>,
) -> std::io::Result<()> {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    while let Some(batch) = rx.recv().await {
        queue.extend(batch);
        while let Ok(more) = rx.try_recv() {
            queue.extend(more);
        }
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue.iter().take(64).map(|b| IoSlice::new(b)).collect();
            let mut n = writer.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let Some(front) = queue.front_mut() else {
                    break;
                };
                if front.len() <= n {
                    n -= front.len();
                    queue.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
    }
    writer.shutdown().await
}
