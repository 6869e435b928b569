//! The fixed newstyle handshake as a pure state machine (proto.md "Fixed newstyle
//! negotiation", "Option types"; `NBD_OPT_INFO`/`NBD_OPT_GO` and `NBD_INFO_*` from the INFO
//! extension, now part of proto.md).
//!
//! The driver sends [`Negotiation::greeting`], feeds the client flags to
//! [`Negotiation::handle_client_flags`] and each option to [`Negotiation::handle_option`],
//! sends the bytes of the returned [`Step`] and does what it says. Supported: `EXPORT_NAME`
//! (with the 124 zeroes unless NO_ZEROES), `ABORT`, `LIST`, `INFO`, `GO`, `STRUCTURED_REPLY`;
//! every other option gets `NBD_REP_ERR_UNSUP`.

use crate::Export;
use crate::request::Session;
use crate::wire::{
    EXPORT_NAME_ZEROES, ExportNameReply, Greeting, InfoRequest, InfoType, OptionCode, ReplyCode,
    emit_info_block_size, emit_info_export, emit_info_string, emit_option_reply, emit_server_entry,
    handshake_flags, transmission_flags as tf,
};
use sanshim_blockdev::BlockDevice;

/// Option data this server reads into memory; longer options are skipped and refused.
pub const MAX_OPTION_DATA: u32 = 16 * 1024;

/// What a client learns about one export during the handshake.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ExportParams {
    /// Export name.
    pub name: String,
    /// Export description.
    pub description: String,
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags without `SEND_DF` (added once structured replies are negotiated).
    pub flags: u16,
    /// Minimum block size: the device's logical block size.
    pub min_block: u32,
    /// Preferred block size.
    pub preferred_block: u32,
    /// Maximum payload of a read or write.
    pub max_block: u32,
}

/// The handshake state of one connection.
#[derive(Debug)]
pub struct Negotiation<'a> {
    exports: &'a [ExportParams],
    structured: bool,
    no_zeroes: bool,
    refusal: Option<&'static str>,
}

/// What the driver does after an option.
#[derive(Debug, Eq, PartialEq)]
pub enum Step {
    /// Send the bytes and read the next option.
    Continue(Vec<u8>),
    /// Send the bytes and close the connection (`NBD_OPT_ABORT`).
    Close(Vec<u8>),
    /// Send the bytes and enter transmission on `export`.
    Transmit {
        /// Bytes to send.
        reply: Vec<u8>,
        /// Index of the chosen export.
        export: usize,
        /// Whether structured replies were negotiated.
        structured: bool,
        /// Whether the client asked for `NBD_INFO_BLOCK_SIZE` with `NBD_OPT_GO`, which
        /// commits it to the advertised block sizes (proto.md "Block size constraints"); a
        /// client that did not is served with a minimum block size of 1.
        block_size_agreed: bool,
    },
    /// Close without a reply: `NBD_OPT_EXPORT_NAME` named an unknown export, which the
    /// protocol gives no way to refuse.
    Refuse(NegotiationError),
}

/// Why the handshake ended without transmission.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The client set flags this server did not offer.
    #[error("client sent unknown flags {0:#x}")]
    UnknownClientFlags(u32),
    /// `NBD_OPT_EXPORT_NAME` named an export that does not exist.
    #[error("client asked for unknown export {0:?}")]
    UnknownExport(String),
    /// The server refuses every export to this client (see [`Negotiation::refusing`]).
    #[error("refused: {0}")]
    Refused(&'static str),
}

impl ExportParams {
    /// Derives what to advertise from an export and the server's largest payload.
    pub fn new<D: BlockDevice>(export: &Export<D>, max_request: u32) -> Self {
        let g = export.device.geometry();
        let writable = !(export.read_only || g.read_only);
        let mut flags = tf::HAS_FLAGS | tf::CAN_MULTI_CONN;
        let mut set = |cond: bool, flag: u16| {
            if cond {
                flags |= flag;
            }
        };
        set(!writable, tf::READ_ONLY);
        set(g.can_flush, tf::SEND_FLUSH);
        set(writable && (g.can_fua || g.can_flush), tf::SEND_FUA);
        set(writable && g.can_discard, tf::SEND_TRIM);
        set(writable, tf::SEND_WRITE_ZEROES);
        // FAST_ZERO is honoured whatever the device: where zeroing would be slow the request
        // fails at once with NBD_ENOTSUP (BlockDevice::write_zeroes_fast).
        set(writable, tf::SEND_FAST_ZERO);
        let min_block = g.block_size;
        let max_block = max_request - max_request % min_block.max(1);
        let granule = g
            .limits
            .optimal_granularity_blocks
            .max(1)
            .saturating_mul(min_block);
        let preferred_block = granule
            .max(4096)
            .checked_next_power_of_two()
            .unwrap_or(max_block);
        ExportParams {
            name: export.name.clone(),
            description: export.description.clone(),
            size: g.size_bytes(),
            flags,
            min_block,
            preferred_block: preferred_block.min(max_block).max(min_block),
            max_block,
        }
    }

    /// Transmission flags for a connection with or without structured replies.
    pub fn flags(&self, structured: bool) -> u16 {
        if structured {
            self.flags | tf::SEND_DF
        } else {
            self.flags
        }
    }

    /// The transmission parameters of a connection to this export: the advertised minimum
    /// block size binds only a client that agreed to it (see [`Step::Transmit`]); the others
    /// may address single bytes, which the server serves by read-modify-write.
    pub fn session(&self, structured: bool, block_size_agreed: bool) -> Session {
        Session {
            size: self.size,
            flags: self.flags(structured),
            block_size: if block_size_agreed { self.min_block } else { 1 },
            max_payload: self.max_block,
            structured,
        }
    }
}

impl<'a> Negotiation<'a> {
    /// A handshake over these exports (the first is the default).
    pub fn new(exports: &'a [ExportParams]) -> Self {
        Negotiation {
            exports,
            structured: false,
            no_zeroes: false,
            refusal: None,
        }
    }

    /// A handshake that serves nothing and says why (a server at its connection limit):
    /// every option but `NBD_OPT_ABORT` gets `NBD_REP_ERR_POLICY` with `reason`, which clients
    /// show their user, and `NBD_OPT_EXPORT_NAME`, which cannot be refused, closes.
    pub fn refusing(exports: &'a [ExportParams], reason: &'static str) -> Self {
        Negotiation {
            refusal: Some(reason),
            ..Negotiation::new(exports)
        }
    }

    /// The greeting the server sends first.
    pub fn greeting() -> Greeting {
        Greeting::new(handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES)
    }

    /// Takes the client flags.
    ///
    /// # Errors
    /// [`NegotiationError::UnknownClientFlags`]: the connection must be closed.
    pub fn handle_client_flags(&mut self, flags: u32) -> Result<(), NegotiationError> {
        let known = u32::from(handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES);
        if flags & !known != 0 {
            return Err(NegotiationError::UnknownClientFlags(flags));
        }
        // Clients without FIXED_NEWSTYLE are served the fixed way too, which proto.md allows.
        self.no_zeroes = flags & u32::from(handshake_flags::NO_ZEROES) != 0;
        Ok(())
    }

    /// Handles one option and its data.
    pub fn handle_option(&mut self, option: OptionCode, data: &[u8]) -> Step {
        if let Some(reason) = self.refusal {
            return match option {
                OptionCode::ABORT => Step::Close(reply(option, ReplyCode::ACK, &[])),
                OptionCode::EXPORT_NAME => Step::Refuse(NegotiationError::Refused(reason)),
                _ => error(option, ReplyCode::ERR_POLICY, reason),
            };
        }
        match option {
            OptionCode::EXPORT_NAME => self.export_name(data),
            OptionCode::ABORT => Step::Close(reply(option, ReplyCode::ACK, &[])),
            OptionCode::LIST => self.list(data),
            OptionCode::INFO | OptionCode::GO => self.info(option, data),
            OptionCode::STRUCTURED_REPLY => self.structured_reply(data),
            _ => error(option, ReplyCode::ERR_UNSUP, "option not supported"),
        }
    }

    /// Handles an option whose data (longer than [`MAX_OPTION_DATA`]) the driver skipped.
    pub fn handle_oversized_option(&mut self, option: OptionCode) -> Step {
        if self.refusal.is_some() {
            return self.handle_option(option, &[]);
        }
        match option {
            OptionCode::EXPORT_NAME => {
                Step::Refuse(NegotiationError::UnknownExport("(name too long)".into()))
            }
            OptionCode::ABORT
            | OptionCode::LIST
            | OptionCode::INFO
            | OptionCode::GO
            | OptionCode::STRUCTURED_REPLY => {
                error(option, ReplyCode::ERR_TOO_BIG, "option data too long")
            }
            _ => error(option, ReplyCode::ERR_UNSUP, "option not supported"),
        }
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        if name.is_empty() {
            return (!self.exports.is_empty()).then_some(0);
        }
        self.exports.iter().position(|e| e.name.as_bytes() == name)
    }

    fn export_name(&mut self, data: &[u8]) -> Step {
        let Some(index) = self.find(data) else {
            let name = String::from_utf8_lossy(data).into_owned();
            return Step::Refuse(NegotiationError::UnknownExport(name));
        };
        let e = &self.exports[index];
        let header = ExportNameReply {
            size: e.size.into(),
            flags: e.flags(self.structured).into(),
        };
        let mut reply = zerocopy::IntoBytes::as_bytes(&header).to_vec();
        if !self.no_zeroes {
            reply.extend_from_slice(&[0; EXPORT_NAME_ZEROES]);
        }
        Step::Transmit {
            reply,
            export: index,
            structured: self.structured,
            block_size_agreed: false,
        }
    }

    fn list(&self, data: &[u8]) -> Step {
        if !data.is_empty() {
            return error(
                OptionCode::LIST,
                ReplyCode::ERR_INVALID,
                "LIST takes no data",
            );
        }
        let mut out = Vec::new();
        for e in self.exports {
            let entry = emit_server_entry(&e.name, &e.description);
            emit_option_reply(&mut out, OptionCode::LIST, ReplyCode::SERVER, &entry);
        }
        emit_option_reply(&mut out, OptionCode::LIST, ReplyCode::ACK, &[]);
        Step::Continue(out)
    }

    fn info(&self, option: OptionCode, data: &[u8]) -> Step {
        let request = match InfoRequest::parse(data) {
            Ok(r) => r,
            Err(_) => return error(option, ReplyCode::ERR_INVALID, "malformed INFO/GO data"),
        };
        let Some(index) = self.find(request.name) else {
            return error(option, ReplyCode::ERR_UNKNOWN, "no such export");
        };
        let e = &self.exports[index];
        let mut out = Vec::new();
        let info = |out: &mut Vec<u8>, payload: &[u8]| {
            emit_option_reply(out, option, ReplyCode::INFO, payload);
        };
        info(
            &mut out,
            &emit_info_export(e.size, e.flags(self.structured)),
        );
        if request.requests.contains(&InfoType::NAME) {
            info(&mut out, &emit_info_string(InfoType::NAME, &e.name));
        }
        if request.requests.contains(&InfoType::DESCRIPTION) && !e.description.is_empty() {
            info(
                &mut out,
                &emit_info_string(InfoType::DESCRIPTION, &e.description),
            );
        }
        // Sent even when not asked for: proto.md lets the server volunteer it, so that clients
        // that did not ask (the kernel via nbd-client) learn the alignment that is fastest;
        // they are not bound by it (see `ExportParams::session`).
        info(
            &mut out,
            &emit_info_block_size(e.min_block, e.preferred_block, e.max_block),
        );
        emit_option_reply(&mut out, option, ReplyCode::ACK, &[]);
        if option == OptionCode::GO {
            Step::Transmit {
                reply: out,
                export: index,
                structured: self.structured,
                block_size_agreed: request.requests.contains(&InfoType::BLOCK_SIZE),
            }
        } else {
            Step::Continue(out)
        }
    }

    fn structured_reply(&mut self, data: &[u8]) -> Step {
        if !data.is_empty() {
            let msg = "STRUCTURED_REPLY takes no data";
            return error(OptionCode::STRUCTURED_REPLY, ReplyCode::ERR_INVALID, msg);
        }
        self.structured = true;
        Step::Continue(reply(OptionCode::STRUCTURED_REPLY, ReplyCode::ACK, &[]))
    }
}

fn reply(option: OptionCode, code: ReplyCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + payload.len());
    emit_option_reply(&mut out, option, code, payload);
    out
}

fn error(option: OptionCode, code: ReplyCode, message: &str) -> Step {
    Step::Continue(reply(option, code, message.as_bytes()))
}

#[cfg(test)]
mod tests;
