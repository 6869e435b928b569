//! [`Server`]: exports, limits and the shutdown signal shared by every listener and connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::conn::{ConnectionError, Counters, Target, handshake, transmit};
use crate::listen::{Accepted, Listener};
use crate::negotiate::ExportParams;
use crate::wire::MAX_STRING;
use crate::{Config, Export, MAX_REQUEST_BYTES};
use sanshim_blockdev::BlockDevice;

/// An NBD server over a fixed set of exports of one device type. Cheap to clone; clones
/// share everything.
pub struct Server<D> {
    inner: Arc<Inner<D>>,
}

/// What a server's connections moved so far.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// Requests run against the device.
    pub requests: u64,
    /// Read payload bytes copied in userspace on their way to the socket (replies of at
    /// most 4 KiB are gathered into one write; larger ones go out from the device's buffer).
    pub copied_bytes: u64,
}

/// A graceful-shutdown signal: once triggered, listeners stop accepting and connections stop
/// reading requests, answer those in flight and close.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

/// Why a server could not be built.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No exports were given.
    #[error("no exports")]
    NoExports,
    /// Two exports share a name.
    #[error("export name {0:?} is used twice")]
    DuplicateName(String),
    /// A name or description is longer than NBD allows or holds a NUL.
    #[error("export name or description {0:?} is too long or contains NUL")]
    BadString(String),
    /// The device's block size cannot be advertised (NBD allows 1 to 64 KiB, powers of two).
    #[error("export {name:?}: block size {block_size} cannot be advertised")]
    BlockSize {
        /// The export.
        name: String,
        /// Its block size.
        block_size: u32,
    },
    /// The limits in [`Config`] contradict each other or exceed 32 MiB.
    #[error("bad limits: {0}")]
    Limits(&'static str),
}

struct Inner<D> {
    counters: Arc<Counters>,
    config: Config,
    exports: Vec<Export<D>>,
    params: Vec<ExportParams>,
    shutdown: Shutdown,
    connections: Arc<Semaphore>,
}

impl<D> Clone for Server<D> {
    fn clone(&self) -> Self {
        Server {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: BlockDevice> std::fmt::Debug for Server<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.inner.config)
            .field("exports", &self.inner.exports)
            .finish()
    }
}

impl<D: BlockDevice + 'static> Server<D> {
    /// Builds a server; the first export is the default one.
    ///
    /// # Errors
    /// [`ConfigError`] for bad exports or limits.
    pub fn new(config: Config, exports: Vec<Export<D>>) -> Result<Server<D>, ConfigError> {
        check_config(&config)?;
        check_exports(&exports, &config)?;
        let params = exports
            .iter()
            .map(|e| ExportParams::new(e, config.max_request_bytes))
            .collect();
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let inner = Inner {
            counters: Arc::default(),
            config,
            exports,
            params,
            shutdown: Shutdown::new(),
            connections,
        };
        Ok(Server {
            inner: Arc::new(inner),
        })
    }

    /// The exports served.
    pub fn exports(&self) -> &[Export<D>] {
        &self.inner.exports
    }

    /// What the server's connections moved so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            copied_bytes: c.copied.load(Ordering::Relaxed),
        }
    }

    /// The server's shutdown signal (trigger it from a signal handler).
    pub fn shutdown_signal(&self) -> Shutdown {
        self.inner.shutdown.clone()
    }

    /// Begins a graceful shutdown; [`Server::serve`] returns once its connections drained.
    pub fn shutdown(&self) {
        self.inner.shutdown.trigger();
    }

    /// Accepts clients on `listener` until shutdown, then drops the listener (removing a unix
    /// socket) and waits until every connection it accepted has finished.
    pub async fn serve(&self, listener: Listener) {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = self.inner.shutdown.wait() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok(stream) => self.spawn_connection(&mut conns, stream),
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    }

    /// Serves one already-connected client (handshake, then transmission), outside the
    /// connection limit. Returns when the client leaves or, after shutdown, when its in-flight
    /// requests are answered.
    ///
    /// # Errors
    /// [`ConnectionError`] saying why the connection ended abnormally.
    pub async fn serve_stream<S>(&self, mut stream: S) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = &self.inner;
        let negotiated = tokio::select! {
            () = inner.shutdown.wait() => return Ok(()),
            r = tokio::time::timeout(
                inner.config.handshake_timeout,
                handshake(&mut stream, &inner.params),
            ) => r.map_err(|_| ConnectionError::HandshakeTimeout)??,
        };
        match negotiated {
            Some((export, structured)) => self.transmit(stream, export, structured).await,
            None => Ok(()),
        }
    }

    /// Serves the transmission phase of export number `export` on `stream` with simple replies,
    /// as for the kernel, which is told the export's parameters out of band.
    pub(crate) async fn transmit<S>(
        &self,
        stream: S,
        export: usize,
        structured: bool,
    ) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let inner = &self.inner;
        let (Some(params), Some(e)) = (inner.params.get(export), inner.exports.get(export)) else {
            return Ok(());
        };
        let target = Target {
            params,
            device: Arc::clone(&e.device),
            structured,
            counters: Arc::clone(&inner.counters),
        };
        transmit(stream, target, &inner.config, &inner.shutdown).await
    }

    /// What the kernel must be told about export number `export`.
    pub(crate) fn params(&self, export: usize) -> Option<&ExportParams> {
        self.inner.params.get(export)
    }

    /// Index of the export called `name` (the first one for an empty name).
    pub(crate) fn find_export(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return (!self.inner.exports.is_empty()).then_some(0);
        }
        self.inner.exports.iter().position(|e| e.name == name)
    }

    fn spawn_connection(&self, conns: &mut JoinSet<()>, stream: Accepted) {
        let Ok(permit) = Arc::clone(&self.inner.connections).try_acquire_owned() else {
            tracing::warn!(peer = %stream.peer(), "connection limit reached, closing");
            return;
        };
        let server = self.clone();
        conns.spawn(async move {
            let peer = stream.peer();
            tracing::debug!(%peer, "client connected");
            let result = match stream {
                Accepted::Unix(s) => server.serve_stream(s).await,
                Accepted::Tcp(s, _) => server.serve_stream(s).await,
            };
            match result {
                Ok(()) => tracing::debug!(%peer, "client disconnected"),
                Err(e) => tracing::info!(%peer, error = %e, "connection ended"),
            }
            drop(permit);
        });
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }

    /// Triggers the shutdown; idempotent.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Whether the shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel stays open while we wait.
        let _ = rx.wait_for(|triggered| *triggered).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

fn check_config(c: &Config) -> Result<(), ConfigError> {
    if c.max_request_bytes == 0 || c.max_request_bytes > MAX_REQUEST_BYTES {
        return Err(ConfigError::Limits(
            "max_request_bytes must be 1 byte to 32 MiB",
        ));
    }
    if c.connection_buffer_bytes < c.max_request_bytes {
        return Err(ConfigError::Limits(
            "connection_buffer_bytes is below max_request_bytes",
        ));
    }
    if c.max_connections == 0 || c.max_inflight_requests == 0 {
        return Err(ConfigError::Limits(
            "connection and request limits must be positive",
        ));
    }
    Ok(())
}

fn check_exports<D: BlockDevice>(
    exports: &[Export<D>],
    config: &Config,
) -> Result<(), ConfigError> {
    if exports.is_empty() {
        return Err(ConfigError::NoExports);
    }
    for (i, e) in exports.iter().enumerate() {
        for s in [&e.name, &e.description] {
            if s.len() > MAX_STRING || s.contains('\0') {
                return Err(ConfigError::BadString(s.chars().take(64).collect()));
            }
        }
        if exports[..i].iter().any(|other| other.name == e.name) {
            return Err(ConfigError::DuplicateName(e.name.clone()));
        }
        let bs = e.device.geometry().block_size;
        if !bs.is_power_of_two() || bs > 65536 || bs > config.max_request_bytes {
            return Err(ConfigError::BlockSize {
                name: e.name.clone(),
                block_size: bs,
            });
        }
    }
    Ok(())
}
