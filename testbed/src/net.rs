//! Socket plumbing shared by the target and the proxy: an accept loop that can be stopped,
//! a registry of live streams to shut down, and a vectored `write_all`.

use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;

/// Live streams of one server, shut down all at once when it stops; and the threads serving
/// them, joined then.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    inner: Mutex<StreamsInner>,
}

#[derive(Debug, Default)]
struct StreamsInner {
    next: u64,
    streams: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
    closed: bool,
}

impl Streams {
    /// Registers a clone of `stream`; returns its key, or `None` (and shuts the stream down)
    /// when the server is already stopping.
    pub(crate) fn insert(&self, stream: &TcpStream) -> Option<u64> {
        let mut inner = self.lock();
        if inner.closed {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return None;
        }
        let clone = stream.try_clone().ok()?;
        inner.next += 1;
        let key = inner.next;
        inner.streams.insert(key, clone);
        Some(key)
    }

    /// Forgets a stream that its thread has finished with.
    pub(crate) fn remove(&self, key: u64) {
        self.lock().streams.remove(&key);
    }

    /// Keeps a serving thread's handle to join on [`Streams::close`].
    pub(crate) fn add_thread(&self, handle: JoinHandle<()>) {
        let mut inner = self.lock();
        inner.threads.retain(|t| !t.is_finished());
        inner.threads.push(handle);
    }

    /// Shuts down every live stream, leaving the server running.
    pub(crate) fn shutdown_all(&self) {
        for stream in self.lock().streams.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Shuts down every stream (which wakes any thread blocked reading or writing it),
    /// refuses new ones, and joins the serving threads.
    pub(crate) fn close(&self) {
        let threads = {
            let mut inner = self.lock();
            inner.closed = true;
            for stream in inner.streams.values() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            std::mem::take(&mut inner.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An accept loop on its own thread, stopped by [`Acceptor::stop`].
#[derive(Debug)]
pub(crate) struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts connections on `listener`, handing each to `serve` on the acceptor thread
    /// (which should spawn its own thread for it).
    pub(crate) fn spawn(
        listener: TcpListener,
        name: &str,
        mut serve: impl FnMut(TcpStream) + Send + 'static,
    ) -> io::Result<Acceptor> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        return;
                    }
                    match stream {
                        Ok(stream) => serve(stream),
                        Err(e) => tracing::debug!("accept: {e}"),
                    }
                }
            })?;
        Ok(Acceptor {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: sets the flag, wakes the blocked `accept` with a connection of our
    /// own, and joins the thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, std::time::Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes all of `parts` with as few `writev` calls as the kernel allows.
pub(crate) fn write_all_vectored(stream: &mut impl Write, parts: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        // Linux accepts at most 1024 slices per call (IOV_MAX).
        let n = rest.len().min(1024);
        let Some(batch) = rest.get(..n) else { break };
        match stream.write_vectored(batch) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
