//! What a [`crate::FakeTarget`] offers: its name, its LUN, the operational values it
//! negotiates (RFC 7143 §13) and how it answers SCSI (SPC-5, SBC-4).

use std::time::Duration;

/// How the target answers HeaderDigest / DataDigest (RFC 7143 §13.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Digest {
    /// Answer `None` (or `Reject` when the initiator does not offer `None`).
    #[default]
    None,
    /// Answer `CRC32C` (or `Reject` when the initiator does not offer `CRC32C`).
    Crc32c,
    /// Accept the first value of the initiator's list.
    InitiatorFirst,
}

/// Configuration of a [`crate::FakeTarget`]; start from `TargetConfig::default()` and change
/// what a test needs with struct update syntax.
///
/// The target has two logical units: LUN 0, a storage array controller (peripheral device
/// type 0x0c) that answers INQUIRY (standard and VPD 0x00, 0x80, 0x83), TEST UNIT READY and
/// REPORT LUNS; and LUN 1, a direct-access disk of `block_count` blocks of `block_size` bytes
/// kept in memory.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The target's iSCSI name (TargetName of normal sessions).
    pub iqn: String,
    /// Bytes per logical block of LUN 1: 512 or 4096.
    pub block_size: u32,
    /// Number of logical blocks of LUN 1.
    pub block_count: u64,
    /// HeaderDigest answer.
    pub header_digest: Digest,
    /// DataDigest answer.
    pub data_digest: Digest,
    /// MaxRecvDataSegmentLength the target declares (RFC 7143 §13.12); it refuses longer
    /// data segments. Default 262144.
    pub max_recv_data_segment_length: u32,
    /// The target's MaxBurstLength (answer: the minimum of both). Default 262144.
    pub max_burst_length: u32,
    /// The target's FirstBurstLength (answer: the minimum of both), not clipped to
    /// `max_burst_length`: set it above `max_burst_length` to reproduce tgtd, which answers
    /// FirstBurstLength=65536 together with MaxBurstLength=16384. Default 65536.
    pub first_burst_length: u32,
    /// The target's ImmediateData (answer: AND). Default true.
    pub immediate_data: bool,
    /// The target's InitialR2T (answer: OR). Default true.
    pub initial_r2t: bool,
    /// The target's DefaultTime2Wait (answer: the maximum of both). Default 0.
    pub default_time2wait: u16,
    /// Command window: MaxCmdSN = ExpCmdSN + window - 1, so 0 closes it. Changeable while
    /// running with [`crate::FakeTarget::set_window`]. Default 32.
    pub window: u32,
    /// Send GOOD status in the last Data-In of a read (S bit, "phase collapse", RFC 7143
    /// §11.7.4) rather than in a separate SCSI Response. Default true.
    pub status_in_data_in: bool,
    /// Send a NOP-In ping (valid TTT) this often on idle full-feature connections and expect
    /// the NOP-Out echo. Default `None`.
    pub ping_interval: Option<Duration>,
    /// First StatSN of each connection. Default 1.
    pub initial_stat_sn: u32,
    /// Unit serial number (VPD 0x80; also the tail of the T10 vendor id designator).
    pub serial: String,
    /// NAA IEEE Registered Extended designator (type 6 NAA, 16 bytes) of LUN 1 in VPD 0x83;
    /// LUN 0's is the same with the last byte xor 0xff.
    pub naa: [u8; 16],
    /// MAXIMUM TRANSFER LENGTH in blocks (VPD 0xB0); 0 = no limit. Longer READ/WRITE
    /// commands get CHECK CONDITION ILLEGAL REQUEST, INVALID FIELD IN CDB.
    pub max_transfer_blocks: u32,
    /// LBPU (VPD 0xB2): UNMAP is supported.
    pub lbpu: bool,
    /// LBPWS (VPD 0xB2): WRITE SAME(16) with UNMAP is supported.
    pub lbpws: bool,
    /// LBPRZ (VPD 0xB2, READ CAPACITY(16)): unmapped blocks read as zeroes. Unmapped
    /// blocks are zeroed either way; this only changes what the target states.
    pub lbprz: bool,
    /// WP bit of MODE SENSE(10); writes then fail with DATA PROTECT, WRITE PROTECTED.
    pub write_protect: bool,
    /// DPOFUA bit of MODE SENSE(10).
    pub dpofua: bool,
    /// Return a caching mode page (0x08) with this WCE bit; `None` returns no pages (and
    /// asking for page 0x08 alone gets INVALID FIELD IN CDB).
    pub caching_page: Option<bool>,
    /// Further `TargetAddress` values for SendTargets, as `host:port,tpgt` (for example an
    /// unreachable `127.0.0.1:9,1`); the target's own `127.0.0.1:PORT,1` always comes first.
    pub extra_addresses: Vec<String>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            iqn: "iqn.2024-01.org.sanshim:fake-target".to_owned(),
            block_size: 512,
            block_count: 32_768,
            header_digest: Digest::None,
            data_digest: Digest::None,
            max_recv_data_segment_length: 262_144,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            immediate_data: true,
            initial_r2t: true,
            default_time2wait: 0,
            window: 32,
            status_in_data_in: true,
            ping_interval: None,
            initial_stat_sn: 1,
            serial: "SANSHIM0001".to_owned(),
            naa: [
                0x60, 0x01, 0x40, 0x50, 0x53, 0x41, 0x4e, 0x53, 0x48, 0x49, 0x4d, 0x00, 0x00, 0x00,
                0x00, 0x01,
            ],
            max_transfer_blocks: 0,
            lbpu: true,
            lbpws: true,
            lbprz: true,
            write_protect: false,
            dpofua: true,
            caching_page: Some(true),
            extra_addresses: Vec::new(),
        }
    }
}

impl TargetConfig {
    /// Size of LUN 1 in bytes.
    pub fn capacity(&self) -> u64 {
        self.block_count * u64::from(self.block_size)
    }
}
