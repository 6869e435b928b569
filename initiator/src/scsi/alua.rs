//! Asymmetric logical unit access (ALUA, SPC-5 §5.16) and the REPORT TARGET PORT GROUPS
//! parameter data (SPC-5 §6.37): the target port groups of a logical unit, the access state
//! of each and the relative target ports in each. A path learns its own group from the Device
//! Identification page ([`super::DeviceIdentification::target_port_group`]) and looks up its
//! state here.
//!
//! ```text
//!  RETURN DATA LENGTH (4) [extended header (4)] descriptor descriptor ...
//!  descriptor: PREF|STATE, *_SUP bits, GROUP (2), -, STATUS, vendor, PORT COUNT, port (4) × count
//! ```
//!
//! The extended header is read whichever way the target counted RETURN DATA LENGTH (see
//! [`TargetPortGroups`]).

use std::fmt;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::ParseError;

sanshim_codepoint::code_point! {
    /// The ASYMMETRIC ACCESS STATE of a target port group (SPC-5 §5.16).
    pub struct AccessState(u8) as "{:#03x}" {
        /// Active/optimized: every command is processed at full performance.
        ACTIVE_OPTIMIZED = 0x0 => "active/optimized",
        /// Active/non-optimized: every command is processed, perhaps more slowly.
        ACTIVE_NON_OPTIMIZED = 0x1 => "active/non-optimized",
        /// Standby: only management commands (INQUIRY, REPORT TARGET PORT GROUPS, ...).
        STANDBY = 0x2 => "standby",
        /// Unavailable: hardly any command.
        UNAVAILABLE = 0x3 => "unavailable",
        /// Logical block dependent: the state depends on the LBA (SBC-4 referrals).
        LOGICAL_BLOCK_DEPENDENT = 0x4 => "logical block dependent",
        /// Offline: the port cannot be reached.
        OFFLINE = 0xe => "offline",
        /// Transitioning between states.
        TRANSITIONING = 0xf => "transitioning",
    }
}

impl AccessState {
    /// Whether a path in this state processes reads and writes: active/optimized,
    /// active/non-optimized, and logical block dependent (for the blocks that allow it).
    pub fn carries_io(self) -> bool {
        self.io_rank().is_some()
    }

    /// Rank as a path for I/O, lower is better: active/optimized 0, active/non-optimized 1,
    /// logical block dependent 2; `None` for states that carry no I/O (standby,
    /// unavailable, offline, transitioning, unknown values).
    pub fn io_rank(self) -> Option<u8> {
        match self {
            AccessState::ACTIVE_OPTIMIZED => Some(0),
            AccessState::ACTIVE_NON_OPTIMIZED => Some(1),
            AccessState::LOGICAL_BLOCK_DEPENDENT => Some(2),
            _ => None,
        }
    }

    /// Whether a path in this state is better for I/O than one in `other`: it carries I/O
    /// and ranks strictly before `other` (see [`AccessState::io_rank`]).
    pub fn is_preferred_for_io(self, other: AccessState) -> bool {
        match (self.io_rank(), other.io_rank()) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The access states a target port group supports: T_SUP, O_SUP, LBD_SUP, U_SUP, S_SUP,
/// AN_SUP and AO_SUP, byte 1 of its descriptor as returned.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct SupportedStates(pub u8);

impl SupportedStates {
    /// T_SUP: the group may be seen transitioning.
    pub fn transitioning(self) -> bool {
        self.0 & T_SUP != 0
    }

    /// O_SUP: offline is supported.
    pub fn offline(self) -> bool {
        self.0 & O_SUP != 0
    }

    /// LBD_SUP: logical block dependent is supported.
    pub fn lba_dependent(self) -> bool {
        self.0 & LBD_SUP != 0
    }

    /// U_SUP: unavailable is supported.
    pub fn unavailable(self) -> bool {
        self.0 & U_SUP != 0
    }

    /// S_SUP: standby is supported.
    pub fn standby(self) -> bool {
        self.0 & S_SUP != 0
    }

    /// AN_SUP: active/non-optimized is supported.
    pub fn active_non_optimized(self) -> bool {
        self.0 & AN_SUP != 0
    }

    /// AO_SUP: active/optimized is supported.
    pub fn active_optimized(self) -> bool {
        self.0 & AO_SUP != 0
    }

    /// Whether `state` is among the supported ones (`false` for unknown states).
    pub fn contains(self, state: AccessState) -> bool {
        SUPPORT_BITS
            .iter()
            .any(|&(bit, s, _)| s == state && self.0 & bit != 0)
    }

    /// The supported states, active/optimized first.
    pub fn states(self) -> impl Iterator<Item = AccessState> {
        SUPPORT_BITS
            .iter()
            .filter(move |&&(bit, _, _)| self.0 & bit != 0)
            .map(|&(_, state, _)| state)
    }
}

/// `SupportedStates(0x8f: AO_SUP|AN_SUP|S_SUP|U_SUP|T_SUP)`.
impl fmt::Debug for SupportedStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SupportedStates({:#04x}:", self.0)?;
        let mut sep = " ";
        for &(bit, _, name) in SUPPORT_BITS {
            if self.0 & bit != 0 {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        f.write_str(")")
    }
}

/// One target port group descriptor.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TargetPortGroup {
    /// TARGET PORT GROUP: the group's identifier, as VPD 0x83 names it.
    pub id: u16,
    /// ASYMMETRIC ACCESS STATE of every port in the group.
    pub state: AccessState,
    /// PREF: the group is a preferred one for I/O.
    pub preferred: bool,
    /// The states the group supports.
    pub supported: SupportedStates,
    /// STATUS CODE: 0 no status, 1 altered by SET TARGET PORT GROUPS, 2 altered by implicit
    /// ALUA behaviour.
    pub status_code: u8,
    /// The vendor specific byte.
    pub vendor: u8,
    /// RELATIVE TARGET PORT IDENTIFIER of each port in the group, in the target's order.
    pub relative_target_ports: Vec<u16>,
}

/// REPORT TARGET PORT GROUPS parameter data.
///
/// Targets count RETURN DATA LENGTH two ways under the extended header: SCST, and the Linux
/// and sg3_utils initiators, count every byte after the length field (header included); LIO
/// and tcmu-runner count the descriptors only. [`TargetPortGroups::parse`] accepts both: the
/// descriptors end at exactly one of the two places. LIO (`target_core_alua.c`, Linux 6.6)
/// also cuts its transfer to RETURN DATA LENGTH + 4 bytes, so an extended answer from it
/// lacks its last target port, whatever the allocation length; that is why
/// [`Cdb::report_target_port_groups`](super::Cdb::report_target_port_groups) asks for the
/// length-only header.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TargetPortGroups {
    /// The groups, in the target's order.
    pub groups: Vec<TargetPortGroup>,
    /// IMPLICIT TRANSITION TIME in seconds, when the answer has the extended header (0: the
    /// target states none).
    pub implicit_transition_time: Option<u8>,
}

impl TargetPortGroups {
    /// Parses REPORT TARGET PORT GROUPS data with either header, whichever was asked for.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below the 4-byte RETURN DATA LENGTH; [`ParseError::Truncated`]
    /// when the data is longer than what was returned (ask again with the allocation length
    /// it names; for an extended header that length covers both ways of counting);
    /// [`ParseError::Invalid`] for a reserved FORMAT TYPE or a descriptor whose TARGET PORT
    /// COUNT reaches past RETURN DATA LENGTH.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let (header, rest) =
            ReturnDataLength::ref_from_prefix(buf).map_err(|_| ParseError::TooShort {
                what: WHAT,
                need: 4,
                have: buf.len(),
            })?;
        let declared = usize::try_from(header.length.get()).unwrap_or(usize::MAX);
        // Bits 6:4 of byte 4 are FORMAT TYPE in the extended header and reserved in the first
        // descriptor of a length-only one.
        match rest.first().map(|b| (b >> 4) & 0x07) {
            None if declared == 0 => Ok(TargetPortGroups::default()),
            None => Err(ParseError::Truncated {
                what: WHAT,
                need: declared.saturating_add(8),
                have: buf.len(),
            }),
            Some(FORMAT_LENGTH_ONLY) => Self::parse_length_only(buf, declared),
            Some(FORMAT_EXTENDED) => Self::parse_extended(buf, declared),
            Some(_) => Err(ParseError::Invalid {
                what: WHAT,
                reason: "FORMAT TYPE is reserved",
            }),
        }
    }

    /// The group with identifier `id`.
    pub fn group(&self, id: u16) -> Option<&TargetPortGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The group listing the target port with relative identifier `relative_port`.
    pub fn group_of_port(&self, relative_port: u16) -> Option<&TargetPortGroup> {
        self.groups
            .iter()
            .find(|g| g.relative_target_ports.contains(&relative_port))
    }

    fn parse_length_only(buf: &[u8], declared: usize) -> Result<Self, ParseError> {
        let end = declared.saturating_add(4);
        let data = buf.get(..end).ok_or(ParseError::Truncated {
            what: WHAT,
            need: end,
            have: buf.len(),
        })?;
        Ok(TargetPortGroups {
            groups: descriptors(data, 4, end, end)?,
            implicit_transition_time: None,
        })
    }

    fn parse_extended(buf: &[u8], declared: usize) -> Result<Self, ParseError> {
        // Everything after the length field, or the descriptors only (module documentation).
        let (all_end, list_end) = (declared.saturating_add(4), declared.saturating_add(8));
        let header = buf
            .get(4..)
            .and_then(|rest| ExtendedHeader::ref_from_prefix(rest).ok())
            .map(|(h, _)| h);
        let (Some(header), true) = (header, buf.len() >= all_end) else {
            return Err(ParseError::Truncated {
                what: WHAT,
                need: list_end.max(8),
                have: buf.len(),
            });
        };
        Ok(TargetPortGroups {
            groups: descriptors(buf, 8, all_end, list_end)?,
            implicit_transition_time: Some(header.implicit_transition_time),
        })
    }
}

/// Reads descriptors from `start` until one ends exactly at `end` or at `last_end` (the two
/// ways of counting RETURN DATA LENGTH; equal for the length-only header).
fn descriptors(
    buf: &[u8],
    start: usize,
    end: usize,
    last_end: usize,
) -> Result<Vec<TargetPortGroup>, ParseError> {
    let past_end = ParseError::Invalid {
        what: WHAT,
        reason: "a descriptor reaches past RETURN DATA LENGTH",
    };
    let cut = ParseError::Truncated {
        what: WHAT,
        need: last_end,
        have: buf.len(),
    };
    let mut groups = Vec::new();
    let mut offset = start;
    while offset != end && offset != last_end {
        let rest = buf.get(offset..).unwrap_or_default();
        let (header, tail) = GroupDescriptor::ref_from_prefix(rest).map_err(|_| {
            match offset.saturating_add(size_of::<GroupDescriptor>()) > last_end {
                true => past_end,
                false => cut,
            }
        })?;
        let ports_len = usize::from(header.port_count) * size_of::<PortDescriptor>();
        let next = offset + size_of::<GroupDescriptor>() + ports_len;
        if next > last_end {
            return Err(past_end);
        }
        let (ports, _) =
            <[PortDescriptor]>::ref_from_prefix_with_elems(tail, usize::from(header.port_count))
                .map_err(|_| cut)?;
        groups.push(header.group(ports));
        offset = next;
    }
    Ok(groups)
}

const WHAT: &str = "REPORT TARGET PORT GROUPS data";
const FORMAT_LENGTH_ONLY: u8 = 0;
const FORMAT_EXTENDED: u8 = 1;
const T_SUP: u8 = 0x80;
const O_SUP: u8 = 0x40;
const LBD_SUP: u8 = 0x10;
const U_SUP: u8 = 0x08;
const S_SUP: u8 = 0x04;
const AN_SUP: u8 = 0x02;
const AO_SUP: u8 = 0x01;

/// Each support bit, the state it stands for and its name in the standard.
const SUPPORT_BITS: &[(u8, AccessState, &str)] = &[
    (AO_SUP, AccessState::ACTIVE_OPTIMIZED, "AO_SUP"),
    (AN_SUP, AccessState::ACTIVE_NON_OPTIMIZED, "AN_SUP"),
    (S_SUP, AccessState::STANDBY, "S_SUP"),
    (U_SUP, AccessState::UNAVAILABLE, "U_SUP"),
    (LBD_SUP, AccessState::LOGICAL_BLOCK_DEPENDENT, "LBD_SUP"),
    (O_SUP, AccessState::OFFLINE, "O_SUP"),
    (T_SUP, AccessState::TRANSITIONING, "T_SUP"),
];

/// The RETURN DATA LENGTH field that starts both headers.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ReturnDataLength {
    length: U32,
}

/// Bytes 4..8 of the extended header.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ExtendedHeader {
    /// FORMAT TYPE (6:4).
    format_type: u8,
    /// IMPLICIT TRANSITION TIME, seconds.
    implicit_transition_time: u8,
    reserved: [u8; 2],
}

/// The fixed 8 bytes of a target port group descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct GroupDescriptor {
    /// PREF (7), ASYMMETRIC ACCESS STATE (3:0).
    pref_state: u8,
    /// T_SUP (7), O_SUP (6), LBD_SUP (4), U_SUP (3), S_SUP (2), AN_SUP (1), AO_SUP (0).
    supported: u8,
    group: U16,
    reserved: u8,
    status_code: u8,
    vendor: u8,
    port_count: u8,
}

impl GroupDescriptor {
    fn group(&self, ports: &[PortDescriptor]) -> TargetPortGroup {
        TargetPortGroup {
            id: self.group.get(),
            state: AccessState(self.pref_state & 0x0f),
            preferred: self.pref_state & 0x80 != 0,
            supported: SupportedStates(self.supported),
            status_code: self.status_code,
            vendor: self.vendor,
            relative_target_ports: ports.iter().map(|p| p.relative_port.get()).collect(),
        }
    }
}

/// A target port descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct PortDescriptor {
    obsolete: [u8; 2],
    relative_port: U16,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::scsi::tests_util::bytes;

    /// Two groups as a two-controller array reports them, length-only header.
    const TWO_GROUPS: &str = concat!(
        "00000018", // RETURN DATA LENGTH 24: two descriptors of 12
        // PREF | active/optimized; T_SUP O_SUP U_SUP S_SUP AN_SUP AO_SUP; group 0001
        "80cf0001", "00",       // reserved
        "02",       // STATUS CODE: altered by implicit ALUA
        "00",       // vendor specific
        "01",       // TARGET PORT COUNT 1
        "00000001", // obsolete | relative target port 1
        // standby; same support bits; group 0002; reserved; no status; vendor 5a; one port
        "02cf0002", "00", "00", "5a", "01", "00000002", // relative target port 2
    );

    #[test]
    fn struct_sizes_match_the_standard() {
        assert_eq!(size_of::<ReturnDataLength>(), 4);
        assert_eq!(size_of::<ExtendedHeader>(), 4);
        assert_eq!(size_of::<GroupDescriptor>(), 8);
        assert_eq!(size_of::<PortDescriptor>(), 4);
    }

    #[test]
    fn test_parse_length_only() {
        let tpg = TargetPortGroups::parse(&bytes(TWO_GROUPS)).unwrap();
        assert_eq!(tpg.implicit_transition_time, None);
        assert_eq!(
            tpg.groups[0],
            TargetPortGroup {
                id: 1,
                state: AccessState::ACTIVE_OPTIMIZED,
                preferred: true,
                supported: SupportedStates(0xcf),
                status_code: 2,
                vendor: 0,
                relative_target_ports: vec![1],
            }
        );
        let standby = &tpg.groups[1];
        assert_eq!((standby.id, standby.state), (2, AccessState::STANDBY));
        assert!(!standby.preferred);
        assert_eq!(standby.vendor, 0x5a);
        assert_eq!(tpg.group_of_port(2).map(|g| g.id), Some(2));
        assert_eq!(tpg.group_of_port(3), None);
        assert_eq!(
            tpg.group(1).map(|g| g.state),
            Some(AccessState::ACTIVE_OPTIMIZED)
        );
        assert_eq!(tpg.group(7), None);
    }

    /// LIO's layout (drivers/target/target_core_alua.c): default_tg_pt_gp, id 0, every
    /// state supported, two iSCSI target portal groups as relative ports 1 and 2.
    #[test]
    fn test_parse_several_ports() {
        let raw = bytes(concat!(
            "00000010", // RETURN DATA LENGTH 16
            "00df0000", // active/optimized | T O LBD U S AN AO | group 0
            "00000002", // reserved | status 0 | vendor 0 | two ports
            "00000001", // relative target port 1
            "00000002", // relative target port 2
        ));
        let tpg = TargetPortGroups::parse(&raw).unwrap();
        assert_eq!(tpg.groups.len(), 1);
        assert_eq!(tpg.groups[0].relative_target_ports, [1, 2]);
        assert_eq!(tpg.group_of_port(1).map(|g| g.id), Some(0));
        let all: Vec<_> = tpg.groups[0].supported.states().collect();
        assert_eq!(all.len(), 7);
        // Zero ports is allowed: a group with no port on this target.
        let raw = bytes("000000080300000700010000");
        let tpg = TargetPortGroups::parse(&raw).unwrap();
        assert_eq!(tpg.groups[0].state, AccessState::UNAVAILABLE);
        assert_eq!(tpg.groups[0].id, 7);
        assert!(tpg.groups[0].relative_target_ports.is_empty());
    }

    /// The extended header, RETURN DATA LENGTH counted as SPC and SCST count it: every byte
    /// after the field, the 4 header bytes included.
    #[test]
    fn test_parse_extended_header() {
        let raw = bytes(concat!(
            "00000010", // RETURN DATA LENGTH 16 = 4 header + 12 descriptor
            "10",       // FORMAT TYPE 001b
            "3c",       // IMPLICIT TRANSITION TIME 60 s
            "0000",     // reserved
            "01030010", // active/non-optimized | AN_SUP AO_SUP | group 0x0010
            "00010001", // reserved | altered by SET TARGET PORT GROUPS | vendor | one port
            "00000003", // relative target port 3
            "ffffffff", // bytes past the data (a target padding to the allocation length)
        ));
        let tpg = TargetPortGroups::parse(&raw).unwrap();
        assert_eq!(tpg.implicit_transition_time, Some(60));
        assert_eq!(tpg.groups.len(), 1);
        let g = &tpg.groups[0];
        assert_eq!(
            (g.id, g.state, g.status_code),
            (0x10, AccessState::ACTIVE_NON_OPTIMIZED, 1)
        );
        assert_eq!(g.relative_target_ports, [3]);
        assert!(g.supported.active_optimized() && g.supported.active_non_optimized());
        assert!(!g.supported.standby() && !g.supported.transitioning());
    }

    /// The extended header as LIO and tcmu-runner count it: RETURN DATA LENGTH covers the
    /// descriptors only.
    #[test]
    fn test_parse_extended_header_descriptors_only_length() {
        let full = bytes(concat!(
            "00000018", // RETURN DATA LENGTH 24: two descriptors, header not counted
            "10000000", // FORMAT TYPE 001b | no implicit transition time | reserved
            "00070001", // active/optimized | S AN AO | group 1
            "00000001", // one port
            "00000001", // relative target port 1
            "02070002", // standby | group 2
            "00000001", // one port
            "00000002", // relative target port 2
        ));
        let tpg = TargetPortGroups::parse(&full).unwrap();
        assert_eq!(tpg.implicit_transition_time, Some(0));
        assert_eq!(tpg.groups.len(), 2);
        assert_eq!(
            tpg.group_of_port(2).map(|g| g.state),
            Some(AccessState::STANDBY)
        );
        // LIO sends RETURN DATA LENGTH + 4 bytes: the last port is missing. Asking for 32
        // bytes does not help with LIO, but the error says what the data declares.
        assert_eq!(
            TargetPortGroups::parse(&full[..28]),
            Err(ParseError::Truncated {
                what: WHAT,
                need: 32,
                have: 28
            })
        );
    }

    #[test]
    fn test_truncated_answers_name_the_allocation_length() {
        let raw = bytes(TWO_GROUPS);
        for cut in [4, 5, 12, 16, 27] {
            assert_eq!(
                TargetPortGroups::parse(&raw[..cut]),
                Err(ParseError::Truncated {
                    what: WHAT,
                    need: if cut == 4 { 32 } else { 28 },
                    have: cut
                }),
                "cut at {cut}"
            );
        }
        // Extended header cut inside the header, and inside the descriptors.
        let ext = bytes("000000101000000001030010");
        for cut in [6, 12] {
            assert_eq!(
                TargetPortGroups::parse(&ext[..cut]),
                Err(ParseError::Truncated {
                    what: WHAT,
                    need: 24,
                    have: cut
                })
            );
        }
        assert_eq!(
            TargetPortGroups::parse(&[0, 0, 0]),
            Err(ParseError::TooShort {
                what: WHAT,
                need: 4,
                have: 3
            })
        );
        // No group at all, with either header.
        assert_eq!(
            TargetPortGroups::parse(&bytes("00000000")).unwrap().groups,
            []
        );
        let empty = TargetPortGroups::parse(&bytes("0000000410050000")).unwrap();
        assert_eq!(
            (empty.groups.len(), empty.implicit_transition_time),
            (0, Some(5))
        );
    }

    #[test]
    fn test_hostile_lengths() {
        let invalid = |raw: &str| {
            assert!(
                matches!(
                    TargetPortGroups::parse(&bytes(raw)),
                    Err(ParseError::Invalid { .. })
                ),
                "{raw}"
            );
        };
        // TARGET PORT COUNT 2 where RETURN DATA LENGTH leaves room for one port.
        invalid("0000000c00010001000000020000000100000002");
        // RETURN DATA LENGTH ends inside a descriptor header.
        invalid("0000000400010001000000010000000100000002");
        // Extended: the descriptor ends neither 4 nor 8 bytes past RETURN DATA LENGTH.
        invalid("0000000e10000000000100010000000100000001");
        // A reserved FORMAT TYPE.
        invalid("0000000c2000000000010001000000010000");
        // RETURN DATA LENGTH near u32::MAX: a retry length, not an allocation or a panic.
        assert_eq!(
            TargetPortGroups::parse(&bytes("ffffffff00000000")),
            Err(ParseError::Truncated {
                what: WHAT,
                need: 0xffff_ffff + 4,
                have: 8
            })
        );
        assert!(matches!(
            TargetPortGroups::parse(&bytes("fffffffc10000000")),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn access_states() {
        use AccessState as S;
        assert_eq!(S::ACTIVE_OPTIMIZED.to_string(), "active/optimized");
        assert_eq!(format!("{:?}", S(0x5)), "AccessState(0x5)");
        let io = [
            S::ACTIVE_OPTIMIZED,
            S::ACTIVE_NON_OPTIMIZED,
            S::LOGICAL_BLOCK_DEPENDENT,
        ];
        let none = [
            S::STANDBY,
            S::UNAVAILABLE,
            S::OFFLINE,
            S::TRANSITIONING,
            S(0x7),
        ];
        assert!(io.iter().all(|s| s.carries_io()));
        assert!(none.iter().all(|s| !s.carries_io()));
        assert!(S::ACTIVE_OPTIMIZED.is_preferred_for_io(S::ACTIVE_NON_OPTIMIZED));
        assert!(!S::ACTIVE_NON_OPTIMIZED.is_preferred_for_io(S::ACTIVE_OPTIMIZED));
        assert!(!S::ACTIVE_OPTIMIZED.is_preferred_for_io(S::ACTIVE_OPTIMIZED));
        assert!(S::ACTIVE_NON_OPTIMIZED.is_preferred_for_io(S::STANDBY));
        for bad in none {
            assert!(!bad.is_preferred_for_io(S::TRANSITIONING), "{bad:?}");
            assert!(S::LOGICAL_BLOCK_DEPENDENT.is_preferred_for_io(bad));
        }
        let mut paths = vec![S::STANDBY, S::ACTIVE_NON_OPTIMIZED, S::ACTIVE_OPTIMIZED];
        paths.sort_by_key(|s| s.io_rank().unwrap_or(u8::MAX));
        assert_eq!(
            paths,
            [S::ACTIVE_OPTIMIZED, S::ACTIVE_NON_OPTIMIZED, S::STANDBY]
        );
    }

    #[test]
    fn supported_states() {
        let s = SupportedStates(0x8f);
        assert_eq!(
            format!("{s:?}"),
            "SupportedStates(0x8f: AO_SUP|AN_SUP|S_SUP|U_SUP|T_SUP)"
        );
        assert!(s.contains(AccessState::TRANSITIONING) && !s.contains(AccessState::OFFLINE));
        assert!(!s.contains(AccessState(0x9)));
        assert!(SupportedStates(0x40).offline() && SupportedStates(0x10).lba_dependent());
        assert!(SupportedStates(0x08).unavailable());
        assert_eq!(
            format!("{:?}", SupportedStates(0)),
            "SupportedStates(0x00:)"
        );
    }

    /// Bytes shaped like an answer: a small RETURN DATA LENGTH, often a format byte, then
    /// descriptors with small port counts.
    fn plausible() -> impl Strategy<Value = Vec<u8>> {
        let answer = (
            0u32..64,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..80),
        )
            .prop_map(|(len, extended, mut body)| {
                let mut v = len.to_be_bytes().to_vec();
                if extended {
                    v.extend_from_slice(&[0x10, 0, 0, 0]);
                }
                for (i, b) in body.iter_mut().enumerate() {
                    if i % 8 == 7 {
                        *b %= 4;
                    }
                }
                v.extend(body);
                v
            });
        prop_oneof![any::<Vec<u8>>(), answer]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics(buf in plausible()) {
            if let Ok(tpg) = TargetPortGroups::parse(&buf) {
                let ports: usize = tpg.groups.iter().map(|g| g.relative_target_ports.len()).sum();
                prop_assert!(8 * tpg.groups.len() + 4 * ports <= buf.len());
            }
        }
    }
}
