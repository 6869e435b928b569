//! The thread that serves one target connection: reads bytes, frames PDUs with the
//! initiator's [`Codec`] in the target role, feeds them to [`Connection`] and writes what it
//! queues, several PDUs per vectored write. It makes no protocol decisions.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sanshim_initiator::wire::{Codec, DIGEST_LEN, Role};

use super::Shared;
use super::conn::{Connection, Transmit};
use crate::net::write_all_vectored;

/// How often an idle connection wakes up for ticks and the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Serves `stream` until the peer closes, the connection ends, or the target stops.
pub(crate) fn serve(shared: Arc<Shared>, mut stream: TcpStream) {
    if let Err(e) = run(&shared, &mut stream) {
        tracing::debug!("fake target connection ended: {e}");
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn run(shared: &Arc<Shared>, stream: &mut TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(TICK))?;
    stream.set_nodelay(true)?;
    let mut conn = Connection::new(shared.clone(), Instant::now());
    let mut tx = Codec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while !shared.is_stopping() {
        let want = decode_all(&mut conn, &mut buf)?;
        conn.handle_tick(Instant::now());
        if flush(&mut conn, &mut tx, stream)? {
            return Ok(());
        }
        let start = buf.len();
        buf.resize(start + want.max(64 * 1024), 0);
        match stream.read(&mut buf[start..]) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.truncate(start + n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                buf.truncate(start);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Decodes and handles every whole PDU in `buf`; returns how many more bytes the next PDU
/// needs (0 when unknown).
fn decode_all(conn: &mut Connection, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        if conn.is_closed() {
            return Ok(0);
        }
        let codec = conn.rx_codec();
        let info = match codec.decode_header_as(buf, Role::Target) {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(0),
            // The header cannot be trusted: nothing after it can be framed.
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        if buf.len() < info.total_len {
            return Ok(info.total_len - buf.len());
        }
        let before = buf.len();
        let mut decoder = codec;
        match decoder.decode_as(buf, Role::Target) {
            Ok(Some(pdu)) => conn.handle_pdu(pdu, &info.bhs, Instant::now()),
            Ok(None) => return Ok(0),
            Err(e) if buf.len() < before => conn.handle_invalid(&info.bhs, e.reject_reason()),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

/// Writes everything the connection queued; returns whether it asked to close.
fn flush(conn: &mut Connection, tx: &mut Codec, stream: &mut TcpStream) -> io::Result<bool> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut close = false;
    while let Some(t) = conn.poll_transmit() {
        match t {
            Transmit::Pdu(pdu, corrupt) => {
                let encoded = tx.encode_parts(&pdu);
                let trailer = if corrupt && tx.data_digest && !encoded.data.is_empty() {
                    corrupt_digest(&encoded.trailer)
                } else {
                    encoded.trailer
                };
                parts.extend([encoded.header, encoded.data, trailer]);
            }
            Transmit::Digests { header, data } => {
                tx.header_digest = header;
                tx.data_digest = data;
            }
            Transmit::Close => {
                close = true;
                break;
            }
        }
    }
    write_all_vectored(stream, &parts)?;
    Ok(close)
}

/// The trailer (padding + data digest) with the digest's lowest bit flipped.
fn corrupt_digest(trailer: &Bytes) -> Bytes {
    let mut t = trailer.to_vec();
    if let Some(i) = t.len().checked_sub(DIGEST_LEN) {
        if let Some(b) = t.get_mut(i) {
            *b ^= 1;
        }
    }
    Bytes::from(t)
}
