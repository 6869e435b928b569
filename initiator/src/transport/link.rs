//! One connection in the full feature phase, moved byte by byte without ever blocking: the
//! driver waits for readiness (cancellation-safe) and then reads and writes only what the
//! socket takes at once, so timers and new requests are served even when the peer stops in
//! the middle of a PDU.
//!
//! Inbound, after a large Data-In each PDU is read in exact pieces: the header (BHS, AHS,
//! header digest) into a small array; a Data-In's data segment straight into its command's
//! buffer (the only copy is the kernel's, and the CRC32C data digest is computed over the
//! landed bytes); any other PDU's data segment into a buffer of its own, decoded by
//! [`Codec::decode`]. While only small PDUs come, headers are read together with what follows
//! them (read-ahead), so many PDUs come to one system call and their small data segments are
//! copied once. Outbound, PDUs are queued as headers and trailers in one reused buffer and
//! data segments shared with the caller's buffer, and written with vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::session::{ConnectionFailure, Landing, Session};
use crate::wire::{
    BHS_LEN, BasicHeader, Codec, DIGEST_LEN, DecodeError, HeaderInfo, Opcode, Pdu, data_digest,
    read_digest,
};

/// The longest header: BHS, 255 words of AHS, header digest.
const MAX_HEADER: usize = BHS_LEN + 255 * 4 + DIGEST_LEN;
/// Bytes read per readiness before timers and requests get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Buffers per vectored write.
const MAX_IOV: usize = 64;
/// Bytes asked of the socket at once when reading ahead.
const READ_AHEAD: usize = 64 * 1024;
/// A Data-In segment at least this long is worth landing straight from the socket; after
/// one, headers are read exactly (no read-ahead) for [`EXACT_AFTER_LARGE`] PDUs.
const LARGE_SEGMENT: usize = 16 * 1024;
/// PDUs read exactly after a large Data-In segment.
const EXACT_AFTER_LARGE: u32 = 64;

/// What the next inbound bytes are.
#[derive(Debug)]
enum Inbound {
    /// A header, `have` of `need` bytes in `head` (`need` grows once the BHS tells the AHS).
    Header { have: usize, need: usize },
    /// The rest of a PDU that is not a Data-In with data, `have` of `need` bytes in `rest`.
    Rest { have: usize, need: usize },
    /// A Data-In's data segment, landing in its command's buffer.
    Landing {
        landing: Landing,
        filled: usize,
        trailer: usize,
        digest: bool,
    },
    /// Padding and data digest after a landed segment.
    Trailer {
        landing: Landing,
        bytes: [u8; 3 + DIGEST_LEN],
        have: usize,
        need: usize,
        digest: bool,
    },
}

/// What the links of a session moved, for the counting bench and for operators.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Data-In payload bytes the kernel read straight into command buffers.
    pub landed: AtomicU64,
    /// Data-In payload bytes copied in userspace into command buffers (from bytes read
    /// during login beyond its last PDU).
    pub staged: AtomicU64,
}

/// One connection: the socket, its framing, and the bytes in transit both ways.
pub(crate) struct Link {
    stream: TcpStream,
    codec: Codec,
    counters: Arc<Counters>,
    /// Bytes read ahead of the PDU being taken in (and, at first, bytes read during login
    /// beyond its last PDU), consumed before the socket.
    leftover: BytesMut,
    /// PDUs still to be read exactly, header by header, because a large Data-In segment was
    /// seen lately: those land straight from the socket in their command's buffer, with no
    /// copy. While it is 0, a header is read together with whatever follows it (up to
    /// [`READ_AHEAD`]), so small PDUs — 4 KiB reads, SCSI Responses to writes, R2Ts — come
    /// many to a system call, at the price of copying their (small) data once.
    exact: u32,
    inbound: Inbound,
    head: Box<[u8; MAX_HEADER]>,
    rest: BytesMut,
    outbound: Outbound,
}

/// PDUs waiting to be written: headers and trailers in `small`, data shared with its owner.
#[derive(Debug, Default)]
struct Outbound {
    small: BytesMut,
    parts: VecDeque<Part>,
    queued: usize,
}

#[derive(Debug)]
enum Part {
    /// The next this many bytes of `small`.
    Small(usize),
    /// A data segment.
    Data(Bytes),
}

impl Link {
    /// Takes over a logged-in connection.
    pub fn new(
        stream: TcpStream,
        codec: Codec,
        leftover: BytesMut,
        counters: Arc<Counters>,
    ) -> Link {
        Link {
            stream,
            codec,
            counters,
            leftover,
            exact: 0,
            inbound: Inbound::Header {
                have: 0,
                need: BHS_LEN,
            },
            head: Box::new([0; MAX_HEADER]),
            rest: BytesMut::new(),
            outbound: Outbound::default(),
        }
    }

    /// The socket, to wait for readiness on.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes queued for sending.
    pub fn queued(&self) -> usize {
        self.outbound.queued
    }

    /// Queues a PDU.
    pub fn push(&mut self, pdu: &Pdu) {
        self.outbound.push(&self.codec, pdu);
    }

    /// Writes what the socket takes now; `Ok(true)` when nothing is left queued.
    ///
    /// # Errors
    /// The connection failed.
    pub fn write_ready(&mut self) -> Result<bool, ConnectionFailure> {
        self.outbound.write(&self.stream)
    }

    /// Reads what the socket has (up to a budget), feeding whole PDUs to the session.
    ///
    /// # Errors
    /// The connection closed or failed, or its bytes broke framing or a digest; the caller
    /// tells the session.
    pub fn read_ready(
        &mut self,
        session: &mut Session,
        now: Instant,
    ) -> Result<usize, ConnectionFailure> {
        let mut read = 0;
        while read < READ_BUDGET {
            match self.step(session, now)? {
                Some(n) => read += n,
                None => break,
            }
            if !session.is_connected() {
                break;
            }
        }
        if read > 0 {
            session.handle_progress(now);
        }
        Ok(read)
    }

    /// Reads once into whatever the inbound state wants; `None` when the socket has nothing.
    fn step(
        &mut self,
        session: &mut Session,
        now: Instant,
    ) -> Result<Option<usize>, ConnectionFailure> {
        match &mut self.inbound {
            Inbound::Header { have, need } => {
                if self.leftover.is_empty() && self.exact == 0 {
                    // Read ahead: the header and whatever follows it.
                    self.leftover.reserve(READ_AHEAD);
                    match received(self.stream.try_read_buf(&mut self.leftover))? {
                        Some(n) if n > 0 => {}
                        nothing => return Ok(nothing),
                    }
                }
                let Some(n) = fill(
                    &self.stream,
                    &mut self.leftover,
                    &mut self.head[*have..*need],
                )?
                else {
                    return Ok(None);
                };
                *have += n;
                if *have == BHS_LEN && *need == BHS_LEN {
                    let bhs = self.head.first_chunk::<BHS_LEN>().ok_or(framing())?;
                    let digest = if self.codec.header_digest {
                        DIGEST_LEN
                    } else {
                        0
                    };
                    *need = BHS_LEN + BasicHeader::from_array(bhs).ahs_len() + digest;
                }
                if *have == *need {
                    let len = *need;
                    self.header_done(len, session, now)?;
                }
                Ok(Some(n))
            }
            Inbound::Rest { have, need } => {
                let Some(n) = fill(
                    &self.stream,
                    &mut self.leftover,
                    &mut self.rest[*have..*need],
                )?
                else {
                    return Ok(None);
                };
                *have += n;
                if *have == *need {
                    self.inbound = header_state();
                    let mut frame = self.rest.split();
                    match self
                        .codec
                        .decode(&mut frame)
                        .map_err(ConnectionFailure::Decode)?
                    {
                        Some(pdu) => session.handle_pdu(pdu, now),
                        None => return Err(framing()),
                    }
                }
                Ok(Some(n))
            }
            Inbound::Landing {
                landing,
                filled,
                trailer,
                digest,
            } => {
                let dst = session.landing_buffer(landing);
                if dst.len() != landing.len() {
                    return Err(ConnectionFailure::PeerMisbehaved(
                        "Data-In landing vanished",
                    ));
                }
                let staged = !self.leftover.is_empty();
                let Some(n) = fill(&self.stream, &mut self.leftover, &mut dst[*filled..])? else {
                    return Ok(None);
                };
                let counter = match staged {
                    true => &self.counters.staged,
                    false => &self.counters.landed,
                };
                counter.fetch_add(n as u64, Ordering::Relaxed);
                *filled += n;
                if *filled == landing.len() {
                    let (need, digest) = (*trailer, *digest);
                    let state = std::mem::replace(&mut self.inbound, header_state());
                    if let Inbound::Landing { landing, .. } = state {
                        self.inbound = Inbound::Trailer {
                            landing,
                            bytes: [0; 3 + DIGEST_LEN],
                            have: 0,
                            need,
                            digest,
                        };
                        self.trailer_done(session, now)?;
                    }
                }
                Ok(Some(n))
            }
            Inbound::Trailer {
                bytes, have, need, ..
            } => {
                let Some(n) = fill(&self.stream, &mut self.leftover, &mut bytes[*have..*need])?
                else {
                    return Ok(None);
                };
                *have += n;
                self.trailer_done(session, now)?;
                Ok(Some(n))
            }
        }
    }

    /// A whole header of `len` bytes is in `head`: decide where the rest goes.
    fn header_done(
        &mut self,
        len: usize,
        session: &mut Session,
        now: Instant,
    ) -> Result<(), ConnectionFailure> {
        let head = self.head.get(..len).ok_or(framing())?;
        let info: HeaderInfo = self
            .codec
            .decode_header(head)
            .map_err(ConnectionFailure::Decode)?
            .ok_or(framing())?;
        let ahs = head.get(info.ahs_range()).ok_or(framing())?;
        if info.opcode == Opcode::DATA_IN && info.data_len >= LARGE_SEGMENT {
            self.exact = EXACT_AFTER_LARGE;
        } else {
            self.exact = self.exact.saturating_sub(1);
        }
        if info.opcode == Opcode::DATA_IN && info.data_len > 0 {
            let Pdu::DataIn(header) = Pdu::parse_header(&info.bhs, ahs).map_err(invalid)? else {
                return Err(framing());
            };
            let Ok(landing) = session.begin_data_in(header, info.data_len, now) else {
                // The session has failed the connection; the data goes nowhere.
                return Err(ConnectionFailure::PeerMisbehaved("Data-In refused"));
            };
            self.inbound = Inbound::Landing {
                landing,
                filled: 0,
                trailer: info.total_len - info.header_len - info.data_len,
                digest: info.has_data_digest,
            };
        } else if info.total_len == info.header_len {
            self.inbound = header_state();
            let pdu = Pdu::parse(&info.bhs, ahs, Bytes::new()).map_err(invalid)?;
            session.handle_pdu(pdu, now);
        } else {
            self.rest.clear();
            self.rest.extend_from_slice(head);
            self.rest.resize(info.total_len, 0);
            self.inbound = Inbound::Rest {
                have: len,
                need: info.total_len,
            };
        }
        Ok(())
    }

    /// Once the trailer after a landed segment is complete: check the data digest and hand
    /// the Data-In to the session.
    fn trailer_done(
        &mut self,
        session: &mut Session,
        now: Instant,
    ) -> Result<(), ConnectionFailure> {
        let Inbound::Trailer { have, need, .. } = &self.inbound else {
            return Ok(());
        };
        if have < need {
            return Ok(());
        }
        let Inbound::Trailer {
            landing,
            bytes,
            need,
            digest,
            ..
        } = std::mem::replace(&mut self.inbound, header_state())
        else {
            return Ok(());
        };
        if digest {
            let landed = session.landing_buffer(&landing);
            let expected = data_digest(landed);
            let sent = bytes
                .get(need - DIGEST_LEN..need)
                .and_then(|d| d.first_chunk::<DIGEST_LEN>())
                .map_or(0, read_digest);
            if expected != sent && !cfg!(fuzzing) {
                return Err(ConnectionFailure::Decode(DecodeError::DataDigest {
                    itt: landing.itt(),
                    expected,
                    actual: sent,
                }));
            }
        }
        session.finish_data_in(landing, now);
        Ok(())
    }
}

impl Outbound {
    fn push(&mut self, codec: &Codec, pdu: &Pdu) {
        let header = codec.encode_header(pdu, &mut self.small);
        self.parts.push_back(Part::Small(header));
        let data = pdu.data();
        self.queued += header + data.len();
        if !data.is_empty() {
            self.parts.push_back(Part::Data(data.clone()));
            let trailer = codec.encode_trailer(data, &mut self.small);
            if trailer > 0 {
                self.parts.push_back(Part::Small(trailer));
                self.queued += trailer;
            }
        }
    }

    fn write(&mut self, stream: &TcpStream) -> Result<bool, ConnectionFailure> {
        loop {
            if self.parts.is_empty() {
                self.small.clear();
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut offset = 0;
            for (slot, part) in slices.iter_mut().zip(self.parts.iter()) {
                *slot = match part {
                    Part::Small(n) => {
                        let s = self.small.get(offset..offset + n).unwrap_or_default();
                        offset += n;
                        IoSlice::new(s)
                    }
                    Part::Data(b) => IoSlice::new(b),
                };
                count += 1;
            }
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(ConnectionFailure::Io),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ConnectionFailure::Io),
            }
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            let (len, done) = match front {
                Part::Small(len) => {
                    let k = n.min(*len);
                    self.small.advance(k);
                    *len -= k;
                    (k, *len == 0)
                }
                Part::Data(b) => {
                    let k = n.min(b.len());
                    b.advance(k);
                    (k, b.is_empty())
                }
            };
            n -= len;
            if done {
                self.parts.pop_front();
            }
        }
    }
}

/// Reads into `dst`, from the login's leftover bytes first; `None` when the socket has
/// nothing now.
fn fill(
    stream: &TcpStream,
    leftover: &mut BytesMut,
    dst: &mut [u8],
) -> Result<Option<usize>, ConnectionFailure> {
    if dst.is_empty() {
        return Ok(Some(0));
    }
    if !leftover.is_empty() {
        let n = dst.len().min(leftover.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), leftover.get(..n)) {
            d.copy_from_slice(s);
        }
        leftover.advance(n);
        return Ok(Some(n));
    }
    received(stream.try_read(dst))
}

/// What a non-blocking read of the socket came to: `Some(n)` bytes (0 when interrupted),
/// `None` when it has nothing now; end of stream and errors fail the connection.
fn received(read: io::Result<usize>) -> Result<Option<usize>, ConnectionFailure> {
    match read {
        Ok(0) => Err(ConnectionFailure::Closed),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(0)),
        Err(_) => Err(ConnectionFailure::Io),
    }
}

fn header_state() -> Inbound {
    Inbound::Header {
        have: 0,
        need: BHS_LEN,
    }
}

fn framing() -> ConnectionFailure {
    ConnectionFailure::PeerMisbehaved("PDU framing lost")
}

fn invalid(e: crate::wire::InvalidPdu) -> ConnectionFailure {
    ConnectionFailure::Decode(DecodeError::Invalid(e))
}
