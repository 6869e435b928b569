//! Listeners: `unix:PATH` and `tcp:HOST:PORT` (DESIGN.md "Command line contract").
//!
//! A unix socket is created with mode 0600 without a window in which it is reachable with
//! looser permissions: it is bound inside a fresh 0700 directory next to its final path,
//! restricted, then renamed into place. An existing socket at the path is replaced only when
//! nothing accepts connections on it (a stale socket from a crashed run); a live one or a
//! non-socket file is an error. The socket file is removed when the listener is dropped, if it
//! is still ours. A TCP listener binds loopback unless a host is given; bound anywhere else it
//! logs a warning naming the address, since NBD has no authentication here: whoever reaches
//! the address can read and write the LUN.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where to listen, as given on the command line.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ListenAddr {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `tcp:HOST:PORT`, `tcp::PORT` or `tcp:PORT` (no host: loopback).
    Tcp {
        /// Host name or address; `None` for loopback.
        host: Option<String>,
        /// Port; 0 picks a free one.
        port: u16,
    },
}

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    kind: Kind,
}

/// A malformed listen address.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("bad listen address {0:?}: expected unix:PATH or tcp:[HOST:]PORT")]
pub struct ListenAddrError(pub String);

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Another process serves on the unix socket path.
    #[error("{0}: a server is already listening there")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0}: exists and is not a socket")]
    NotASocket(PathBuf),
    /// The host name did not resolve.
    #[error("{0}: host not found")]
    HostNotFound(String),
    /// The system refused.
    #[error("{addr}: {source}")]
    Io {
        /// What was being bound.
        addr: String,
        /// The error.
        source: io::Error,
    },
}

#[derive(Debug)]
enum Kind {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        ino: u64,
    },
    Tcp(TcpListener),
}

/// An accepted connection.
pub(crate) enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ListenAddrError(s.to_owned());
        if let Some(path) = s.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(bad())
            } else {
                Ok(ListenAddr::Unix(path.into()))
            };
        }
        let rest = s.strip_prefix("tcp:").ok_or_else(bad)?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("", rest),
        };
        let port = port.parse::<u16>().map_err(|_| bad())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.contains(['[', ']', '/']) {
            return Err(bad());
        }
        let host = (!host.is_empty()).then(|| host.to_owned());
        Ok(ListenAddr::Tcp { host, port })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Tcp { host: None, port } => write!(f, "tcp::{port}"),
            ListenAddr::Tcp {
                host: Some(h),
                port,
            } if h.contains(':') => write!(f, "tcp:[{h}]:{port}"),
            ListenAddr::Tcp {
                host: Some(h),
                port,
            } => write!(f, "tcp:{h}:{port}"),
        }
    }
}

impl ListenAddr {
    /// Binds the listener.
    ///
    /// # Errors
    /// [`BindError`]; see the module documentation for the unix socket rules.
    pub async fn bind(&self) -> Result<Listener, BindError> {
        match self {
            ListenAddr::Unix(path) => bind_unix(path),
            ListenAddr::Tcp { host, port } => bind_tcp(host.as_deref(), *port).await,
        }
    }
}

impl Listener {
    /// The address actually bound (a TCP port of 0 resolved to the real one).
    pub fn local_addr(&self) -> ListenAddr {
        match &self.kind {
            Kind::Unix { path, .. } => ListenAddr::Unix(path.clone()),
            Kind::Tcp(l) => match l.local_addr() {
                Ok(a) => ListenAddr::Tcp {
                    host: Some(a.ip().to_string()),
                    port: a.port(),
                },
                Err(_) => ListenAddr::Tcp {
                    host: None,
                    port: 0,
                },
            },
        }
    }

    /// The NBD URI of `export` on this listener (`nbd+unix:///NAME?socket=PATH`,
    /// `nbd://HOST:PORT/NAME`).
    pub fn uri(&self, export: &str) -> String {
        let name = percent_encode(export);
        match self.local_addr() {
            ListenAddr::Unix(path) => {
                format!(
                    "nbd+unix:///{name}?socket={}",
                    percent_encode(&path.to_string_lossy())
                )
            }
            ListenAddr::Tcp { host, port } => {
                let host = host.unwrap_or_else(|| "127.0.0.1".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("nbd://{host}:{port}/{name}")
            }
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<Accepted> {
        match &self.kind {
            Kind::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
            Kind::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Replies are written whole; Nagle would only delay them.
                stream.set_nodelay(true)?;
                Ok(Accepted::Tcp(stream, peer))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Kind::Unix { path, ino, .. } = &self.kind {
            // Remove the socket only if it is still the one we bound, not a successor's.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Accepted {
    pub(crate) fn peer(&self) -> String {
        match self {
            Accepted::Unix(_) => "unix".to_owned(),
            Accepted::Tcp(_, peer) => peer.to_string(),
        }
    }
}

fn bind_unix(path: &Path) -> Result<Listener, BindError> {
    let io_err = |source| BindError::Io {
        addr: format!("unix:{}", path.display()),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(BindError::NotASocket(path.into())),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.into())),
            // Nobody accepts: stale. The rename below replaces it atomically.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(io_err(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_err)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(io::ErrorKind::InvalidInput.into()))?;
    let private = parent.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_err)?;
    let result = bind_in(&private, path);
    let _ = std::fs::remove_dir(&private);
    result.map_err(io_err)
}

/// Binds inside the private directory, restricts the socket and moves it to `path`.
fn bind_in(private: &Path, path: &Path) -> io::Result<Listener> {
    let temp = private.join("sock");
    let listener = UnixListener::bind(&temp)?;
    let moved = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = moved {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    let ino = std::fs::symlink_metadata(path)?.ino();
    Ok(Listener {
        kind: Kind::Unix {
            listener,
            path: path.into(),
            ino,
        },
    })
}

async fn bind_tcp(host: Option<&str>, port: u16) -> Result<Listener, BindError> {
    let addr = match host {
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((h, port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| BindError::HostNotFound(h.to_owned()))?,
        },
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Io {
            addr: addr.to_string(),
            source,
        })?;
    if let Some(warning) = exposure_warning(&addr) {
        tracing::warn!("{warning}");
    }
    Ok(Listener {
        kind: Kind::Tcp(listener),
    })
}

/// The warning for a TCP listener that is reachable from beyond this machine; `None` on
/// loopback.
fn exposure_warning(addr: &SocketAddr) -> Option<String> {
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    (!loopback).then(|| {
        format!(
            "NBD listening on {addr}, not on loopback: anyone who can reach this address can \
             read and write the LUN (NBD has no authentication here)"
        )
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_listen_addr() {
        let tcp = |host: Option<&str>, port| ListenAddr::Tcp {
            host: host.map(Into::into),
            port,
        };
        assert_eq!(
            "unix:/run/x.sock".parse(),
            Ok(ListenAddr::Unix("/run/x.sock".into()))
        );
        assert_eq!("tcp:10809".parse(), Ok(tcp(None, 10809)));
        assert_eq!("tcp::10809".parse(), Ok(tcp(None, 10809)));
        assert_eq!("tcp:0.0.0.0:1".parse(), Ok(tcp(Some("0.0.0.0"), 1)));
        assert_eq!("tcp:[::1]:2".parse(), Ok(tcp(Some("::1"), 2)));
        assert_eq!("tcp:localhost:3".parse(), Ok(tcp(Some("localhost"), 3)));
        for bad in [
            "unix:",
            "tcp:",
            "tcp:host:",
            "tcp:h:70000",
            "udp:1",
            "/path",
            "tcp:[::1:2",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
        assert_eq!(tcp(Some("::1"), 2).to_string(), "tcp:[::1]:2");
        assert_eq!(tcp(None, 2).to_string(), "tcp::2");
    }

    #[test]
    fn test_exposure_warning_names_the_address_unless_loopback() {
        let warn = |a: &str| exposure_warning(&a.parse().unwrap());
        for quiet in [
            "127.0.0.1:1",
            "127.1.2.3:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(warn(quiet), None, "{quiet}");
        }
        for loud in [
            "0.0.0.0:10809",
            "192.0.2.7:10809",
            "[::]:10809",
            "[2001:db8::1]:10809",
        ] {
            let w = warn(loud).unwrap();
            let shown: SocketAddr = loud.parse().unwrap();
            assert!(w.contains(&shown.to_string()), "{w}");
            assert!(w.contains("anyone who can reach") && w.contains("read and write"));
            assert!(!w.contains('\n'), "one line: {w}");
        }
    }

    #[test]
    fn test_percent_encode() {
        assert_eq!(percent_encode("a b/c?d"), "a%20b/c%3Fd");
    }

    #[tokio::test]
    async fn test_unix_socket_mode_stale_and_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.sock");
        let addr = ListenAddr::Unix(path.clone());
        let first = addr.bind().await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(addr.bind().await, Err(BindError::InUse(_))));
        assert_eq!(
            first.uri("d 1"),
            format!("nbd+unix:///d%201?socket={}", path.display())
        );
        // A stale socket (bound, then its listener closed without removing it) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("stale")).unwrap();
        drop(stale);
        let stale_addr = ListenAddr::Unix(dir.path().join("stale"));
        let second = stale_addr.bind().await.unwrap();
        drop(second);
        assert!(!dir.path().join("stale").exists());
        drop(first);
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(addr.bind().await, Err(BindError::NotASocket(_))));
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn test_tcp_binds_loopback_by_default() {
        let l = ListenAddr::Tcp {
            host: None,
            port: 0,
        }
        .bind()
        .await
        .unwrap();
        let ListenAddr::Tcp {
            host: Some(host),
            port,
        } = l.local_addr()
        else {
            panic!()
        };
        assert_eq!(host, "127.0.0.1");
        assert_eq!(l.uri("x"), format!("nbd://127.0.0.1:{port}/x"));
    }
}
