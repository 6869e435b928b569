//! One TCP connection carrying iSCSI PDUs (RFC 7143 §4.2): connect with a bounded timeout,
//! send and receive whole PDUs through [`Codec`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::socket::DEFAULT_USER_TIMEOUT;
use crate::wire::{Codec, DecodeError, Pdu};

/// How a connection attempt failed; every variant means "this portal is unreachable".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host as given.
        host: String,
        /// Why.
        source: io::Error,
    },
    /// Nothing answered within the timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The address tried.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The connection was refused or failed.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The address tried.
        addr: String,
        /// Why.
        source: io::Error,
    },
}

/// Why a PDU could not be received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer sent bytes that are not a valid PDU (or failed a digest).
    #[error("bad PDU from the target: {0}")]
    Decode(#[from] DecodeError),
    /// The peer closed the connection.
    #[error("the target closed the connection")]
    Closed,
    /// Nothing arrived in time.
    #[error("no PDU from the target within {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Connects to `addr`, with the maximum segment size clamped first when `mss` is given.
async fn open(addr: SocketAddr, mss: Option<u32>) -> io::Result<TcpStream> {
    let Some(mss) = mss else {
        return TcpStream::connect(addr).await;
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket2::SockRef::from(&socket).set_tcp_mss(mss)?;
    socket.connect(addr).await
}

/// A TCP connection to a portal with its framing state.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    codec: Codec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    peer: SocketAddr,
}

impl Connection {
    /// Connects to `host:port`, trying each resolved address, each bounded by `timeout`.
    ///
    /// # Errors
    /// [`ConnectError`] when no address answers.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Self, ConnectError> {
        Connection::connect_with(host, port, timeout, None).await
    }

    /// As [`Connection::connect`], with the TCP maximum segment size clamped to `mss` (set
    /// before the handshake, so that it bounds the segments both ways) when given.
    ///
    /// # Errors
    /// [`ConnectError`] when no address answers.
    pub async fn connect_with(
        host: &str,
        port: u16,
        timeout: Duration,
        mss: Option<u32>,
    ) -> Result<Self, ConnectError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        let mut last = ConnectError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        };
        for addr in addrs {
            match tokio::time::timeout(timeout, open(addr, mss)).await {
                Ok(Ok(stream)) => {
                    if let Err(e) = super::socket::configure(&stream, DEFAULT_USER_TIMEOUT) {
                        tracing::warn!(%addr, error = %e, "cannot set TCP keep-alive options");
                    }
                    return Ok(Connection {
                        stream,
                        codec: Codec::new(),
                        rbuf: BytesMut::with_capacity(64 * 1024),
                        wbuf: BytesMut::with_capacity(64 * 1024),
                        peer: addr,
                    });
                }
                Ok(Err(source)) => {
                    last = ConnectError::Io {
                        addr: addr.to_string(),
                        source,
                    }
                }
                Err(_) => {
                    last = ConnectError::Timeout {
                        addr: addr.to_string(),
                        timeout,
                    }
                }
            }
        }
        Err(last)
    }

    /// The address we are connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The framing state, to switch digests and limits on after login.
    pub fn codec_mut(&mut self) -> &mut Codec {
        &mut self.codec
    }

    /// Sends one PDU.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn send(&mut self, pdu: &Pdu) -> io::Result<()> {
        self.wbuf.clear();
        self.codec.encode(pdu, &mut self.wbuf);
        self.stream.write_all(&self.wbuf).await
    }

    /// Receives one PDU, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvError`] on malformed input, close, timeout or socket failure.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Pdu, RecvError> {
        match tokio::time::timeout(timeout, self.recv_inner()).await {
            Ok(r) => r,
            Err(_) => Err(RecvError::Timeout(timeout)),
        }
    }

    async fn recv_inner(&mut self) -> Result<Pdu, RecvError> {
        loop {
            if let Some(pdu) = self.codec.decode(&mut self.rbuf)? {
                return Ok(pdu);
            }
            self.rbuf.reserve(64 * 1024);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(RecvError::Closed);
            }
        }
    }

    /// How many bytes were received and not yet taken as a PDU.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// The first `n` bytes received and not yet taken as a PDU, for an error message about a
    /// peer that does not speak iSCSI: printable ASCII as it is, the rest as `\xNN`, quoted.
    pub fn received_text(&self, n: usize) -> String {
        let shown: String = self
            .rbuf
            .iter()
            .take(n)
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        let more = if self.rbuf.len() > n { "..." } else { "" };
        format!("\"{shown}{more}\"")
    }

    /// The socket, the framing state and any bytes already read past the last PDU, for a
    /// driver that takes the connection over.
    pub(crate) fn into_parts(self) -> (TcpStream, Codec, BytesMut) {
        (self.stream, self.codec, self.rbuf)
    }

    /// Closes the connection.
    pub async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
