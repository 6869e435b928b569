//! Operational parameters of RFC 7143 §13: what we offer ([`Proposal`]), what was agreed
//! ([`Negotiated`]), and the per-key rule table the negotiation engine applies.

/// The largest value of the 24-bit length keys (MaxRecvDataSegmentLength, MaxBurstLength,
/// FirstBurstLength): 2^24 - 1.
pub const MAX_LENGTH_VALUE: u32 = (1 << 24) - 1;
/// The smallest value of the 24-bit length keys.
pub const MIN_LENGTH_VALUE: u32 = 512;

/// The kind of session a login opens (RFC 7143 §13.21).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum SessionType {
    /// A session carrying SCSI commands to one target.
    #[default]
    Normal,
    /// A session used only for SendTargets (RFC 7143 §4.3, §13.3).
    Discovery,
}

impl SessionType {
    /// The `SessionType=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Normal => "Normal",
            SessionType::Discovery => "Discovery",
        }
    }
}

/// What to offer for HeaderDigest or DataDigest (RFC 7143 §13.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum DigestPref {
    /// Offer only `CRC32C`: the login fails if the target will not use it.
    Crc32c,
    /// Offer only `None`.
    None,
    /// Offer `CRC32C,None`: the target picks.
    #[default]
    PreferCrc32c,
}

impl DigestPref {
    /// The offered list, in order of preference.
    pub fn offer(self) -> &'static str {
        match self {
            DigestPref::Crc32c => "CRC32C",
            DigestPref::None => "None",
            DigestPref::PreferCrc32c => "CRC32C,None",
        }
    }

    /// Whether the digest `value` (`CRC32C` or `None`) is acceptable under this preference.
    pub fn accepts(self, value: &str) -> bool {
        match value {
            "CRC32C" => self != DigestPref::None,
            "None" => self != DigestPref::Crc32c,
            _ => false,
        }
    }
}

/// The operational keys we offer, with our preferred values (RFC 7143 §13).
///
/// `Default` gives sanshim's choice: MaxRecvDataSegmentLength 262144, MaxBurstLength 16776192,
/// FirstBurstLength 262144, InitialR2T=No, ImmediateData=Yes, MaxOutstandingR2T 1,
/// ErrorRecoveryLevel 0, digests `CRC32C,None`, the RFC defaults for the rest.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Proposal {
    /// HeaderDigest offer.
    pub header_digest: DigestPref,
    /// DataDigest offer.
    pub data_digest: DigestPref,
    /// The largest data segment we accept (declared; 512..=2^24-1).
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength offer (512..=2^24-1).
    pub max_burst_length: u32,
    /// FirstBurstLength offer (512..=2^24-1, at most `max_burst_length`).
    pub first_burst_length: u32,
    /// InitialR2T offer.
    pub initial_r2t: bool,
    /// ImmediateData offer.
    pub immediate_data: bool,
    /// MaxOutstandingR2T offer (1..=65535).
    pub max_outstanding_r2t: u16,
    /// ErrorRecoveryLevel offer (0..=2).
    pub error_recovery_level: u8,
    /// MaxConnections offer (1..=65535).
    pub max_connections: u16,
    /// DefaultTime2Wait offer in seconds (0..=3600).
    pub default_time2wait: u16,
    /// DefaultTime2Retain offer in seconds (0..=3600).
    pub default_time2retain: u16,
    /// DataPDUInOrder offer.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder offer.
    pub data_sequence_in_order: bool,
}

impl Proposal {
    /// Checks every value against its RFC 7143 §13 range.
    ///
    /// # Errors
    /// Names the first offending key.
    pub fn validate(&self) -> Result<(), &'static str> {
        let length_ok = |v: u32| (MIN_LENGTH_VALUE..=MAX_LENGTH_VALUE).contains(&v);
        let checks = [
            (
                length_ok(self.max_recv_data_segment_length),
                "MaxRecvDataSegmentLength",
            ),
            (length_ok(self.max_burst_length), "MaxBurstLength"),
            (length_ok(self.first_burst_length), "FirstBurstLength"),
            (
                self.first_burst_length <= self.max_burst_length,
                "FirstBurstLength > MaxBurstLength",
            ),
            (self.max_outstanding_r2t >= 1, "MaxOutstandingR2T"),
            (self.error_recovery_level <= 2, "ErrorRecoveryLevel"),
            (self.max_connections >= 1, "MaxConnections"),
            (self.default_time2wait <= 3600, "DefaultTime2Wait"),
            (self.default_time2retain <= 3600, "DefaultTime2Retain"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, key)) => Err(key),
            None => Ok(()),
        }
    }

    /// Our value for a non-digest key, as a scalar.
    pub(crate) fn scalar(&self, key: OpKey) -> Scalar {
        match key {
            OpKey::HeaderDigest => Scalar::Bool(self.header_digest != DigestPref::None),
            OpKey::DataDigest => Scalar::Bool(self.data_digest != DigestPref::None),
            OpKey::MaxConnections => Scalar::Number(self.max_connections.into()),
            OpKey::InitialR2T => Scalar::Bool(self.initial_r2t),
            OpKey::ImmediateData => Scalar::Bool(self.immediate_data),
            OpKey::MaxBurstLength => Scalar::Number(self.max_burst_length),
            OpKey::FirstBurstLength => Scalar::Number(self.first_burst_length),
            OpKey::DefaultTime2Wait => Scalar::Number(self.default_time2wait.into()),
            OpKey::DefaultTime2Retain => Scalar::Number(self.default_time2retain.into()),
            OpKey::MaxOutstandingR2T => Scalar::Number(self.max_outstanding_r2t.into()),
            OpKey::DataPduInOrder => Scalar::Bool(self.data_pdu_in_order),
            OpKey::DataSequenceInOrder => Scalar::Bool(self.data_sequence_in_order),
            OpKey::ErrorRecoveryLevel => Scalar::Number(self.error_recovery_level.into()),
        }
    }

    /// The digest preference for a digest key.
    pub(crate) fn digest(&self, key: OpKey) -> DigestPref {
        if key == OpKey::HeaderDigest {
            self.header_digest
        } else {
            self.data_digest
        }
    }
}

impl Default for Proposal {
    fn default() -> Self {
        Proposal {
            header_digest: DigestPref::PreferCrc32c,
            data_digest: DigestPref::PreferCrc32c,
            max_recv_data_segment_length: 262_144,
            max_burst_length: 16_776_192,
            first_burst_length: 262_144,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 1,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
        }
    }
}

/// The session and connection parameters in force after login.
///
/// `Default` gives the RFC 7143 §13 defaults, which is also what holds for any key nobody
/// negotiated.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Negotiated {
    /// CRC32C header digests on this connection.
    pub header_digest: bool,
    /// CRC32C data digests on this connection.
    pub data_digest: bool,
    /// The largest data segment the target may send us (our declaration).
    pub max_recv_data_segment_length: u32,
    /// The largest data segment we may send (the target's declaration).
    pub max_xmit_data_segment_length: u32,
    /// Largest solicited (or unsolicited) data sequence, in bytes.
    pub max_burst_length: u32,
    /// Largest unsolicited data per command, in bytes.
    pub first_burst_length: u32,
    /// Whether unsolicited Data-Out PDUs are forbidden (an R2T is needed first).
    pub initial_r2t: bool,
    /// Whether data may ride in the SCSI Command PDU.
    pub immediate_data: bool,
    /// Outstanding R2Ts per task.
    pub max_outstanding_r2t: u16,
    /// Data PDUs within a sequence arrive in increasing offset order.
    pub data_pdu_in_order: bool,
    /// Data sequences arrive in increasing offset order.
    pub data_sequence_in_order: bool,
    /// Seconds to wait before reconnecting after a connection loss.
    pub default_time2wait: u16,
    /// Seconds the target keeps task state after a connection loss.
    pub default_time2retain: u16,
    /// Error recovery level, 0..=2.
    pub error_recovery_level: u8,
    /// Connections allowed in the session.
    pub max_connections: u16,
    /// The target's TargetAlias, if it declared one.
    pub target_alias: Option<String>,
    /// The target portal group tag of the portal we logged in through.
    pub target_portal_group_tag: Option<u16>,
}

impl Negotiated {
    /// Reads the value of a non-digest key.
    pub(crate) fn scalar(&self, key: OpKey) -> Scalar {
        match key {
            OpKey::HeaderDigest => Scalar::Bool(self.header_digest),
            OpKey::DataDigest => Scalar::Bool(self.data_digest),
            OpKey::MaxConnections => Scalar::Number(self.max_connections.into()),
            OpKey::InitialR2T => Scalar::Bool(self.initial_r2t),
            OpKey::ImmediateData => Scalar::Bool(self.immediate_data),
            OpKey::MaxBurstLength => Scalar::Number(self.max_burst_length),
            OpKey::FirstBurstLength => Scalar::Number(self.first_burst_length),
            OpKey::DefaultTime2Wait => Scalar::Number(self.default_time2wait.into()),
            OpKey::DefaultTime2Retain => Scalar::Number(self.default_time2retain.into()),
            OpKey::MaxOutstandingR2T => Scalar::Number(self.max_outstanding_r2t.into()),
            OpKey::DataPduInOrder => Scalar::Bool(self.data_pdu_in_order),
            OpKey::DataSequenceInOrder => Scalar::Bool(self.data_sequence_in_order),
            OpKey::ErrorRecoveryLevel => Scalar::Number(self.error_recovery_level.into()),
        }
    }

    /// Stores the value of a key; numbers were range-checked against [`OpKey::rule`] already,
    /// so the narrowing conversions saturate only on values the rule table excludes.
    pub(crate) fn set_scalar(&mut self, key: OpKey, value: Scalar) {
        let narrow16 = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        match (key, value) {
            (OpKey::HeaderDigest, Scalar::Bool(b)) => self.header_digest = b,
            (OpKey::DataDigest, Scalar::Bool(b)) => self.data_digest = b,
            (OpKey::InitialR2T, Scalar::Bool(b)) => self.initial_r2t = b,
            (OpKey::ImmediateData, Scalar::Bool(b)) => self.immediate_data = b,
            (OpKey::DataPduInOrder, Scalar::Bool(b)) => self.data_pdu_in_order = b,
            (OpKey::DataSequenceInOrder, Scalar::Bool(b)) => self.data_sequence_in_order = b,
            (OpKey::MaxConnections, Scalar::Number(n)) => self.max_connections = narrow16(n),
            (OpKey::MaxBurstLength, Scalar::Number(n)) => self.max_burst_length = n,
            (OpKey::FirstBurstLength, Scalar::Number(n)) => self.first_burst_length = n,
            (OpKey::DefaultTime2Wait, Scalar::Number(n)) => self.default_time2wait = narrow16(n),
            (OpKey::DefaultTime2Retain, Scalar::Number(n)) => {
                self.default_time2retain = narrow16(n);
            }
            (OpKey::MaxOutstandingR2T, Scalar::Number(n)) => {
                self.max_outstanding_r2t = narrow16(n);
            }
            (OpKey::ErrorRecoveryLevel, Scalar::Number(n)) => {
                self.error_recovery_level = u8::try_from(n).unwrap_or(u8::MAX);
            }
            _ => tracing::error!(?key, ?value, "value of the wrong kind for key; ignored"),
        }
    }
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
            target_alias: None,
            target_portal_group_tag: None,
        }
    }
}

/// An operational key that is negotiated (offered and answered), RFC 7143 §13.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum OpKey {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    InitialR2T,
    ImmediateData,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPduInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
}

/// How the result of a negotiated key follows from the two sides' values.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Rule {
    /// List of digests; the acceptor picks the first acceptable entry.
    Digest,
    /// Numeric minimum within the inclusive range.
    Min(u32, u32),
    /// Numeric maximum within the inclusive range.
    Max(u32, u32),
    /// Boolean OR.
    Or,
    /// Boolean AND.
    And,
}

impl OpKey {
    pub(crate) const ALL: [OpKey; 13] = [
        OpKey::HeaderDigest,
        OpKey::DataDigest,
        OpKey::MaxConnections,
        OpKey::InitialR2T,
        OpKey::ImmediateData,
        OpKey::MaxBurstLength,
        OpKey::FirstBurstLength,
        OpKey::DefaultTime2Wait,
        OpKey::DefaultTime2Retain,
        OpKey::MaxOutstandingR2T,
        OpKey::DataPduInOrder,
        OpKey::DataSequenceInOrder,
        OpKey::ErrorRecoveryLevel,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKey::HeaderDigest => "HeaderDigest",
            OpKey::DataDigest => "DataDigest",
            OpKey::MaxConnections => "MaxConnections",
            OpKey::InitialR2T => "InitialR2T",
            OpKey::ImmediateData => "ImmediateData",
            OpKey::MaxBurstLength => "MaxBurstLength",
            OpKey::FirstBurstLength => "FirstBurstLength",
            OpKey::DefaultTime2Wait => "DefaultTime2Wait",
            OpKey::DefaultTime2Retain => "DefaultTime2Retain",
            OpKey::MaxOutstandingR2T => "MaxOutstandingR2T",
            OpKey::DataPduInOrder => "DataPDUInOrder",
            OpKey::DataSequenceInOrder => "DataSequenceInOrder",
            OpKey::ErrorRecoveryLevel => "ErrorRecoveryLevel",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<OpKey> {
        OpKey::ALL.into_iter().find(|key| key.name() == name)
    }

    pub(crate) fn rule(self) -> Rule {
        const LEN: (u32, u32) = (MIN_LENGTH_VALUE, MAX_LENGTH_VALUE);
        match self {
            OpKey::HeaderDigest | OpKey::DataDigest => Rule::Digest,
            OpKey::MaxConnections | OpKey::MaxOutstandingR2T => Rule::Min(1, 65_535),
            OpKey::MaxBurstLength | OpKey::FirstBurstLength => Rule::Min(LEN.0, LEN.1),
            OpKey::DefaultTime2Wait => Rule::Max(0, 3600),
            OpKey::DefaultTime2Retain => Rule::Min(0, 3600),
            OpKey::ErrorRecoveryLevel => Rule::Min(0, 2),
            OpKey::InitialR2T | OpKey::DataPduInOrder | OpKey::DataSequenceInOrder => Rule::Or,
            OpKey::ImmediateData => Rule::And,
        }
    }

    /// The keys negotiated per connection; the others are leading-only (LO) session keys,
    /// irrelevant to a discovery session.
    pub(crate) fn connection_scoped(self) -> bool {
        matches!(self, OpKey::HeaderDigest | OpKey::DataDigest)
    }
}

/// A key's value as a number or boolean, for rule evaluation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Scalar {
    Number(u32),
    Bool(bool),
}

impl Scalar {
    /// The text form (`Yes`/`No` or decimal).
    pub(crate) fn to_text(self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(true) => "Yes".to_owned(),
            Scalar::Bool(false) => "No".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_proposal_is_valid() {
        assert_eq!(Proposal::default().validate(), Ok(()));
    }

    #[test]
    fn proposal_range_checks() {
        let bad = [
            Proposal {
                max_recv_data_segment_length: 511,
                ..Proposal::default()
            },
            Proposal {
                max_recv_data_segment_length: 1 << 24,
                ..Proposal::default()
            },
            Proposal {
                first_burst_length: 65_536,
                max_burst_length: 4096,
                ..Proposal::default()
            },
            Proposal {
                error_recovery_level: 3,
                ..Proposal::default()
            },
            Proposal {
                max_outstanding_r2t: 0,
                ..Proposal::default()
            },
            Proposal {
                default_time2wait: 3601,
                ..Proposal::default()
            },
        ];
        for proposal in bad {
            assert!(proposal.validate().is_err(), "{proposal:?}");
        }
    }

    #[test]
    fn key_names_round_trip() {
        for key in OpKey::ALL {
            assert_eq!(OpKey::from_name(key.name()), Some(key));
        }
        assert_eq!(OpKey::from_name("headerdigest"), None);
    }

    #[test]
    fn digest_pref() {
        assert!(DigestPref::PreferCrc32c.accepts("CRC32C"));
        assert!(DigestPref::PreferCrc32c.accepts("None"));
        assert!(!DigestPref::Crc32c.accepts("None"));
        assert!(!DigestPref::None.accepts("CRC32C"));
        assert!(!DigestPref::PreferCrc32c.accepts("crc32c"));
    }
}
