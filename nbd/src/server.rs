//! [`Server`]: exports, limits and the shutdown signal shared by every listener and connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::conn::{ConnectionError, Counters, Gauge, Negotiated, Target, handshake, transmit};
use crate::listen::{Accepted, Listener};
use crate::negotiate::ExportParams;
use crate::wire::MAX_STRING;
use crate::{Config, Export, MAX_REQUEST_BYTES};
use sanshim_blockdev::{BlockDevice, Bytewise};

/// An NBD server over a fixed set of exports of one device type. Cheap to clone; clones
/// share everything.
pub struct Server<D> {
    inner: Arc<Inner<D>>,
}

/// What a server's connections moved so far, and what they hold now.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// Requests run against the device.
    pub requests: u64,
    /// Read payload bytes copied in userspace on their way to the socket (replies of at
    /// most 4 KiB are gathered into one write; larger ones go out from the device's buffer).
    pub copied_bytes: u64,
    /// Connections served now (in the handshake or the transmission phase); once it drops,
    /// the connection's place under [`Config::max_connections`] is free.
    pub connections: u64,
    /// Connections turned away at the connection limit so far.
    pub refused_connections: u64,
    /// Requests read whose replies are not yet written, now (at most
    /// [`Config::max_inflight_requests`] per connection).
    pub in_flight: u64,
    /// The most requests that were ever in flight at once.
    pub peak_in_flight: u64,
    /// Request and reply data held now (at most [`Config::connection_buffer_bytes`] per
    /// connection; an unaligned read holds up to two blocks more).
    pub held_bytes: u64,
    /// The most data that was ever held at once.
    pub peak_held_bytes: u64,
    /// Request tasks running now (at the device, or queueing their reply).
    pub running_tasks: u64,
    /// Reads not aligned to the device's blocks, served from the covering blocks.
    pub unaligned_reads: u64,
    /// Writes and write-zeroes not aligned to the device's blocks, served by
    /// read-modify-write.
    pub read_modify_writes: u64,
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
    /// Each export's device, addressed in bytes (one per export, shared by its connections,
    /// so that read-modify-writes are serialised across all of them).
    devices: Vec<Arc<Bytewise<Arc<D>>>>,
    params: Vec<ExportParams>,
    shutdown: Shutdown,
    connections: Arc<Semaphore>,
    /// Connections over the limit that are being told so (as many as the limit, at most).
    refusals: Arc<Semaphore>,
    refused: std::sync::atomic::AtomicU64,
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
        let refusals = Arc::new(Semaphore::new(config.max_connections));
        let devices = exports
            .iter()
            .map(|e| Arc::new(Bytewise::new(Arc::clone(&e.device))))
            .collect();
        let inner = Inner {
            counters: Arc::default(),
            config,
            exports,
            devices,
            params,
            shutdown: Shutdown::new(),
            connections,
            refusals,
            refused: Default::default(),
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
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let bytewise = self.inner.devices.iter().map(|d| d.stats());
        Stats {
            requests: get(&c.requests),
            copied_bytes: get(&c.copied),
            connections: get(&c.connections),
            refused_connections: get(&self.inner.refused),
            in_flight: get(&c.in_flight),
            peak_in_flight: get(&c.peak_in_flight),
            held_bytes: get(&c.held_bytes),
            peak_held_bytes: get(&c.peak_held_bytes),
            running_tasks: get(&c.tasks),
            unaligned_reads: bytewise.clone().map(|s| s.unaligned_reads).sum(),
            read_modify_writes: bytewise.map(|s| s.read_modify_writes).sum(),
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
    pub async fn serve_stream<S>(&self, stream: S) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _connection = self.count_connection();
        self.serve_counted(stream).await
    }

    async fn serve_counted<S>(&self, mut stream: S) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self.handshake(&mut stream, None).await? {
            Some(n) => {
                self.transmit_negotiated(stream, n, self.inner.config.idle_timeout)
                    .await
            }
            None => Ok(()),
        }
    }

    fn count_connection(&self) -> Gauge {
        Gauge::up(&self.inner.counters, |c| &c.connections)
    }

    /// Serves the transmission phase of export number `export` on `stream` with simple replies,
    /// as for the kernel, which is told the export's parameters out of band (so it is bound
    /// by the block size) and may idle for as long as it likes.
    pub(crate) async fn transmit<S>(
        &self,
        stream: S,
        export: usize,
        structured: bool,
    ) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let _connection = self.count_connection();
        let negotiated = Negotiated {
            export,
            structured,
            block_size_agreed: true,
        };
        self.transmit_negotiated(stream, negotiated, None).await
    }

    /// The handshake within the handshake timeout; `None` when the client left or shutdown
    /// came first.
    async fn handshake<S>(
        &self,
        stream: &mut S,
        refusal: Option<&'static str>,
    ) -> Result<Option<Negotiated>, ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let inner = &self.inner;
        tokio::select! {
            () = inner.shutdown.wait() => Ok(None),
            r = tokio::time::timeout(
                inner.config.handshake_timeout,
                handshake(stream, &inner.params, refusal),
            ) => r.map_err(|_| ConnectionError::HandshakeTimeout)?,
        }
    }

    async fn transmit_negotiated<S>(
        &self,
        stream: S,
        n: Negotiated,
        idle_timeout: Option<std::time::Duration>,
    ) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let inner = &self.inner;
        let (Some(params), Some(device)) =
            (inner.params.get(n.export), inner.devices.get(n.export))
        else {
            return Ok(());
        };
        let target = Target {
            params,
            device: Arc::clone(device),
            structured: n.structured,
            block_size_agreed: n.block_size_agreed,
            idle_timeout,
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
            self.refuse(conns, stream);
            return;
        };
        let server = self.clone();
        // Counted until its slot under the limit is free again.
        let connection = self.count_connection();
        conns.spawn(async move {
            let peer = stream.peer();
            tracing::debug!(%peer, "client connected");
            let result = match stream {
                Accepted::Unix(s) => server.serve_counted(s).await,
                Accepted::Tcp(s, _) => server.serve_counted(s).await,
            };
            match result {
                Ok(()) => tracing::debug!(%peer, "client disconnected"),
                Err(e) => tracing::info!(%peer, error = %e, "connection ended"),
            }
            drop(permit);
            drop(connection);
        });
    }
}

impl<D: BlockDevice + 'static> Server<D> {
    /// Turns a connection over the limit away: it is told why in the handshake (as many at a
    /// time as the limit allows, each within the handshake timeout), else closed at once.
    fn refuse(&self, conns: &mut JoinSet<()>, stream: Accepted) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        let limit = self.inner.config.max_connections;
        let peer = stream.peer();
        tracing::warn!(%peer, limit, "connection limit reached: refusing the connection");
        let Ok(permit) = Arc::clone(&self.inner.refusals).try_acquire_owned() else {
            return;
        };
        let server = self.clone();
        conns.spawn(async move {
            let reason = "too many connections: the server's connection limit is reached";
            let _ = match stream {
                Accepted::Unix(mut s) => server.handshake(&mut s, Some(reason)).await,
                Accepted::Tcp(mut s, _) => server.handshake(&mut s, Some(reason)).await,
            };
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
