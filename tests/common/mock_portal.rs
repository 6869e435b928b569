//! A scripted iSCSI portal for states a real target cannot be pushed into: it answers each
//! connection's first Login Request with the next scripted reply (a redirection, "busy",
//! silence, or a close without an answer) and closes. Real logins go to tgtd; this only stands in front of it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use sanshim_initiator::wire::{Bytes, Codec, LoginResponse, LoginStatus, Pdu, Role, encode_text};

/// What the portal does with one connection.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with this login status and, for redirections, this TargetAddress.
    Status(LoginStatus, Option<String>),
    /// Redirect to this same portal (a redirection loop).
    RedirectToSelf,
    /// Accept the connection and never answer.
    Silent,
    /// Read the first Login Request, then close the connection without an answer (as LIO
    /// does when a portal group requires CHAP and none was offered).
    Close,
}

/// A listening mock portal on loopback, answering connections from a script.
pub struct MockPortal {
    port: u16,
    connections: Arc<Mutex<u32>>,
}

impl MockPortal {
    /// Starts a portal answering successive connections with `script`; connections beyond
    /// the script get the last reply again.
    pub fn start(script: Vec<Reply>) -> MockPortal {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock portal");
        let port = listener.local_addr().expect("mock portal address").port();
        let connections = Arc::new(Mutex::new(0u32));
        let counter = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = {
                    let mut c = counter.lock().expect("counter");
                    *c += 1;
                    *c as usize
                };
                let reply = match script.get(n - 1).or(script.last()).cloned() {
                    Some(Reply::RedirectToSelf) => Some(Reply::Status(
                        LoginStatus::TARGET_MOVED_TEMPORARILY,
                        Some(format!("127.0.0.1:{port}")),
                    )),
                    other => other,
                };
                thread::spawn(move || serve(stream, reply));
            }
        });
        MockPortal { port, connections }
    }

    /// The portal's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections arrived so far.
    pub fn connections(&self) -> u32 {
        *self.connections.lock().expect("counter")
    }
}

fn serve(mut stream: TcpStream, reply: Option<Reply>) {
    if matches!(reply, Some(Reply::Close)) {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        let mut chunk = [0u8; 4096];
        while !matches!(
            codec.decode_as(&mut buf, Role::Target),
            Ok(Some(_)) | Err(_)
        ) {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        return;
    }
    let Some(Reply::Status(status, address)) = reply else {
        // Silent: hold the connection open until the peer gives up.
        let mut sink = [0u8; 4096];
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        return;
    };
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    let request = loop {
        match codec.decode_as(&mut buf, Role::Target) {
            Ok(Some(Pdu::LoginRequest(r))) => break r,
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    };
    let data = match &address {
        Some(a) => encode_text(&[("TargetAddress", a.as_str())])
            .expect("text")
            .freeze(),
        None => Bytes::new(),
    };
    let response = Pdu::LoginResponse(LoginResponse {
        csg: request.csg,
        nsg: request.nsg,
        version_max: 0,
        version_active: 0,
        isid: request.isid,
        itt: request.itt,
        exp_cmd_sn: request.cmd_sn,
        max_cmd_sn: request.cmd_sn,
        status,
        data,
        ..LoginResponse::default()
    });
    let mut out = BytesMut::new();
    codec.encode(&response, &mut out);
    let _ = stream.write_all(&out);
}
