//! A small blocking iSCSI initiator built from the wire codec, for driving the fake target
//! and the proxy by hand: login with text keys, SCSI commands with R2T handling, raw PDUs.
#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    reason = "a test helper: a failure is a test failure"
)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sanshim_initiator::wire::{
    Bytes, Codec, DataOut, DecodeError, Isid, LoginRequest, LoginResponse, LoginStatus, Lun,
    NopOut, Pdu, RESERVED_TAG, ScsiCommand, ScsiStatus, Stage, TaskAttr, TextPairs, encode_text,
};

pub const INITIATOR: &str = "iqn.2024-01.org.sanshim:test-initiator";

/// Why a receive failed.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing arrived in time.
    Timeout,
    /// The peer closed the connection.
    Closed,
    /// The bytes did not decode.
    Decode(DecodeError),
    /// Another socket error.
    Io(io::Error),
}

/// The end of a SCSI command.
#[derive(Debug, Default)]
pub struct Completion {
    pub status: ScsiStatus,
    pub data: Vec<u8>,
    /// The SCSI Response's data segment (SenseLength + sense), if a response came.
    pub sense_segment: Bytes,
    pub residual: u32,
    pub underflow: bool,
    pub overflow: bool,
    pub stat_sn: u32,
    pub data_in: u32,
    pub r2ts: u32,
    /// PDUs received meanwhile that belong to nothing (NOP-Ins, Async Messages, Rejects).
    pub others: Vec<Pdu>,
}

pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    /// Codec for what the target sends.
    pub rx: Codec,
    /// Codec for what we send.
    pub tx: Codec,
    pub next_itt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub max_cmd_sn: u32,
    pub isid: Isid,
    pub tsih: u16,
    /// The target's answers and declarations during login.
    pub answers: HashMap<String, String>,
}

impl Client {
    pub fn connect(addr: impl std::net::ToSocketAddrs) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            rx: Codec::new(),
            tx: Codec::new(),
            next_itt: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 0,
            isid: Isid::random_qualifier(0x1234_5678),
            tsih: 0,
            answers: HashMap::new(),
        }
    }

    pub fn connect_addr(addr: SocketAddr) -> Client {
        Client::connect(addr)
    }

    pub fn itt(&mut self) -> u32 {
        self.next_itt += 1;
        self.next_itt
    }

    pub fn send(&mut self, pdu: &Pdu) {
        let mut out = BytesMut::new();
        self.tx.encode(pdu, &mut out);
        self.stream.write_all(&out).expect("send");
    }

    /// Writes raw bytes (for corrupted PDUs).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw");
    }

    pub fn try_recv(&mut self, timeout: Duration) -> Result<Pdu, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.decode(&mut self.buf) {
                Ok(Some(pdu)) => {
                    self.note(&pdu);
                    return Ok(pdu);
                }
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = vec![0u8; 256 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvError::Timeout);
                }
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    pub fn recv(&mut self) -> Pdu {
        match self.try_recv(Duration::from_secs(5)) {
            Ok(pdu) => pdu,
            Err(e) => panic!("recv: {e:?}"),
        }
    }

    /// Tracks ExpStatSN and MaxCmdSN from what the target sends.
    fn note(&mut self, pdu: &Pdu) {
        let (stat_sn, max, advances) = match pdu {
            Pdu::ScsiResponse(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::DataIn(p) => (p.stat_sn, p.max_cmd_sn, p.status_present),
            Pdu::NopIn(p) => (p.stat_sn, p.max_cmd_sn, p.itt != RESERVED_TAG),
            Pdu::TextResponse(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::TaskMgmtResponse(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::LogoutResponse(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::Reject(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::AsyncMessage(p) => (p.stat_sn, p.max_cmd_sn, true),
            Pdu::R2t(p) => (p.stat_sn, p.max_cmd_sn, false),
            Pdu::LoginResponse(p) => (p.stat_sn, p.max_cmd_sn, true),
            _ => return,
        };
        self.max_cmd_sn = max;
        if advances {
            self.exp_stat_sn = stat_sn.wrapping_add(1);
        }
    }

    /// One Login Request; returns the response.
    pub fn login_step(&mut self, csg: Stage, nsg: Stage, pairs: &[(&str, &str)]) -> LoginResponse {
        let req = LoginRequest {
            transit: true,
            csg,
            nsg,
            isid: self.isid,
            tsih: self.tsih,
            itt: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: encode_text(pairs).unwrap().freeze(),
            ..LoginRequest::default()
        };
        self.send(&Pdu::LoginRequest(req));
        match self.recv() {
            Pdu::LoginResponse(r) => {
                for (k, v) in TextPairs::parse(&r.data).unwrap().0 {
                    self.answers.insert(k, v);
                }
                r
            }
            other => panic!("expected a Login Response, got {other:?}"),
        }
    }

    /// A normal-session login (security stage, then operational with `keys`), switching to
    /// the negotiated digests.
    pub fn login(&mut self, target: &str, keys: &[(&str, &str)]) -> LoginResponse {
        self.login_as(&[("TargetName", target), ("SessionType", "Normal")], keys)
    }

    /// A discovery-session login.
    pub fn login_discovery(&mut self, keys: &[(&str, &str)]) -> LoginResponse {
        self.login_as(&[("SessionType", "Discovery")], keys)
    }

    fn login_as(&mut self, names: &[(&str, &str)], keys: &[(&str, &str)]) -> LoginResponse {
        let mut first = vec![("InitiatorName", INITIATOR), ("AuthMethod", "None")];
        first.extend_from_slice(names);
        let r = self.login_step(Stage::SECURITY, Stage::OPERATIONAL, &first);
        assert_eq!(r.status, LoginStatus::SUCCESS, "security stage");
        let r = self.login_step(Stage::OPERATIONAL, Stage::FULL_FEATURE, keys);
        assert_eq!(r.status, LoginStatus::SUCCESS, "operational stage");
        assert!(r.transit && r.nsg == Stage::FULL_FEATURE);
        self.tsih = r.tsih;
        self.enter_full_feature(keys);
        r
    }

    /// Switches the codecs to what login agreed.
    pub fn enter_full_feature(&mut self, keys: &[(&str, &str)]) {
        let on = |k: &str| self.answers.get(k).is_some_and(|v| v == "CRC32C");
        let (h, d) = (on("HeaderDigest"), on("DataDigest"));
        let ours = keys
            .iter()
            .find(|(k, _)| *k == "MaxRecvDataSegmentLength")
            .map_or(8192, |(_, v)| v.parse().unwrap());
        self.rx = Codec {
            header_digest: h,
            data_digest: d,
            max_recv_data_segment_length: ours,
        };
        self.tx = Codec {
            header_digest: h,
            data_digest: d,
            ..Codec::new()
        };
    }

    pub fn answer(&self, key: &str) -> Option<&str> {
        self.answers.get(key).map(String::as_str)
    }

    fn number(&self, key: &str, default: u32) -> u32 {
        self.answer(key).map_or(default, |v| v.parse().unwrap())
    }

    /// A SCSI Command PDU for `cdb` on `lun`, taking the next CmdSN.
    pub fn command_pdu(
        &mut self,
        lun: u64,
        cdb: [u8; 16],
        read_len: u32,
        write_len: u32,
    ) -> ScsiCommand {
        let itt = self.itt();
        let cmd = ScsiCommand {
            final_: true,
            read: read_len > 0,
            write: write_len > 0,
            attr: TaskAttr::SIMPLE,
            lun: Lun::from_number(lun),
            itt,
            expected_data_transfer_length: read_len.max(write_len),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
            ..ScsiCommand::default()
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        cmd
    }

    /// Runs a command to its end: immediate and unsolicited data as negotiated, Data-Out
    /// for every R2T, Data-In gathered.
    pub fn command(&mut self, lun: u64, cdb: [u8; 16], read_len: u32, write: &[u8]) -> Completion {
        let mut cmd = self.command_pdu(lun, cdb, read_len, write.len() as u32);
        let target_mrdsl = self.number("MaxRecvDataSegmentLength", 8192) as usize;
        let fbl = self.number("FirstBurstLength", 65536) as usize;
        let immediate = self.answer("ImmediateData") != Some("No");
        let initial_r2t = self.answer("InitialR2T") != Some("No");
        let unsolicited = if initial_r2t { 0 } else { fbl.min(write.len()) };
        let imm = if immediate {
            fbl.min(target_mrdsl).min(write.len())
        } else {
            0
        };
        cmd.data = Bytes::copy_from_slice(&write[..imm]);
        cmd.final_ = unsolicited <= imm;
        let itt = cmd.itt;
        self.send(&Pdu::ScsiCommand(cmd));
        if unsolicited > imm {
            self.send_data_out(
                itt,
                RESERVED_TAG,
                write,
                imm,
                unsolicited - imm,
                target_mrdsl,
            );
        }
        self.finish(itt, write, target_mrdsl)
    }

    pub fn send_data_out(
        &mut self,
        itt: u32,
        ttt: u32,
        data: &[u8],
        offset: usize,
        len: usize,
        mrdsl: usize,
    ) {
        let mut done = 0;
        let mut data_sn = 0;
        while done < len {
            let n = (len - done).min(mrdsl);
            let start = offset + done;
            let pdu = DataOut {
                final_: done + n == len,
                itt,
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: start as u32,
                data: Bytes::copy_from_slice(&data[start..start + n]),
                ..DataOut::default()
            };
            self.send(&Pdu::DataOut(pdu));
            done += n;
            data_sn += 1;
        }
    }

    /// Collects the rest of command `itt`.
    pub fn finish(&mut self, itt: u32, write: &[u8], mrdsl: usize) -> Completion {
        let mut c = Completion::default();
        loop {
            match self.recv() {
                Pdu::DataIn(d) if d.itt == itt => {
                    let end = d.buffer_offset as usize + d.data.len();
                    if c.data.len() < end {
                        c.data.resize(end, 0);
                    }
                    c.data[d.buffer_offset as usize..end].copy_from_slice(&d.data);
                    c.data_in += 1;
                    if d.status_present {
                        c.status = d.status;
                        c.residual = d.residual;
                        c.underflow = d.underflow;
                        c.overflow = d.overflow;
                        c.stat_sn = d.stat_sn;
                        return c;
                    }
                }
                Pdu::R2t(r) if r.itt == itt => {
                    c.r2ts += 1;
                    let (off, len) = (
                        r.buffer_offset as usize,
                        r.desired_data_transfer_length as usize,
                    );
                    self.send_data_out(itt, r.ttt, write, off, len, mrdsl);
                }
                Pdu::ScsiResponse(r) if r.itt == itt => {
                    c.status = r.status;
                    c.residual = r.residual;
                    c.underflow = r.underflow;
                    c.overflow = r.overflow;
                    c.stat_sn = r.stat_sn;
                    c.sense_segment = r.data;
                    return c;
                }
                Pdu::NopIn(n) if n.ttt != RESERVED_TAG => {
                    self.pong(n.ttt, n.lun);
                    c.others.push(Pdu::NopIn(n));
                }
                other => c.others.push(other),
            }
        }
    }

    /// Answers a target ping.
    pub fn pong(&mut self, ttt: u32, lun: Lun) {
        let pdu = NopOut {
            immediate: true,
            lun,
            itt: RESERVED_TAG,
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::new(),
        };
        self.send(&Pdu::NopOut(pdu));
    }

    /// An immediate NOP-Out ping with `data`; returns its ITT.
    pub fn ping(&mut self, data: &'static [u8]) -> u32 {
        let itt = self.itt();
        let pdu = NopOut {
            immediate: true,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::from_static(data),
            ..NopOut::default()
        };
        self.send(&Pdu::NopOut(pdu));
        itt
    }

    /// Receives until a PDU matches, returning it (others are dropped), or panics after 5 s.
    pub fn recv_until(&mut self, mut matches: impl FnMut(&Pdu) -> bool) -> Pdu {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Ok(pdu) if matches(&pdu) => return pdu,
                Ok(_) => {}
                Err(e) => panic!("waiting for a PDU: {e:?}"),
            }
        }
    }

    /// Asserts that nothing arrives for `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        match self.try_recv(wait) {
            Err(RecvError::Timeout) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }
}
