//! The SCSI device server behind the target: decodes a CDB (SPC-5 §4.2, SBC-4 §5), checks
//! it, and either answers at once or says how much Data-Out it needs before it can finish.
//!
//! LUN 0 is a storage array controller (INQUIRY, TEST UNIT READY, REPORT LUNS); LUN 1 is the
//! in-memory disk. Errors are CHECK CONDITION with fixed-format sense: ILLEGAL REQUEST with
//! INVALID COMMAND OPERATION CODE (0x20/0x00) for unknown commands, LBA OUT OF RANGE
//! (0x21/0x00), INVALID FIELD IN CDB (0x24/0x00), LOGICAL UNIT NOT SUPPORTED (0x25/0x00),
//! PARAMETER LIST LENGTH ERROR (0x1a/0x00); DATA PROTECT, WRITE PROTECTED (0x27/0x00).

use bytes::Bytes;
use sanshim_initiator::scsi::SenseKey;
use sanshim_initiator::wire::ScsiStatus;
use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::config::TargetConfig;
use super::disk::Disk;
use super::pages;
use super::rules::SenseCode;

/// What a finished command returns.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Outcome {
    /// SCSI status.
    pub(crate) status: ScsiStatus,
    /// Sense for CHECK CONDITION.
    pub(crate) sense: Option<SenseCode>,
    /// Data-In (already cut to the CDB's allocation length).
    pub(crate) data: Bytes,
    /// Bytes written to the medium.
    pub(crate) written: u64,
}

impl Outcome {
    pub(crate) fn good(data: Bytes) -> Outcome {
        Outcome {
            status: ScsiStatus::GOOD,
            sense: None,
            data,
            written: 0,
        }
    }

    pub(crate) fn check(key: SenseKey, asc: u8, ascq: u8) -> Outcome {
        Outcome::status(
            ScsiStatus::CHECK_CONDITION,
            Some(SenseCode::new(key, asc, ascq)),
        )
    }

    pub(crate) fn status(status: ScsiStatus, sense: Option<SenseCode>) -> Outcome {
        Outcome {
            status,
            sense,
            data: Bytes::new(),
            written: 0,
        }
    }

    fn illegal(asc: u8) -> Outcome {
        Outcome::check(SenseKey::ILLEGAL_REQUEST, asc, 0)
    }
}

/// What to do with a command.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Plan {
    /// Answer now.
    Done(Outcome),
    /// Collect `len` bytes of Data-Out, then [`finish`] with `op`.
    Write {
        /// Bytes of Data-Out the command transfers.
        len: usize,
        /// What to do with them.
        op: WriteOp,
    },
}

/// A command waiting for its Data-Out.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum WriteOp {
    /// WRITE(10)/(16): store the data at this byte offset.
    Write { offset: u64 },
    /// WRITE SAME(16): repeat the one block of data (or zeroes, with unmap or NDOB) over
    /// `len` bytes from `offset`.
    WriteSame { offset: u64, len: usize, zero: bool },
    /// UNMAP: the data is the parameter list.
    Unmap,
}

/// The logical units of one target.
pub(crate) struct Device<'a> {
    pub(crate) config: &'a TargetConfig,
    pub(crate) disk: &'a Disk,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct InquiryCdb {
    op: u8,
    evpd: u8,
    page: u8,
    allocation_length: U16,
    control: u8,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Cdb10 {
    op: u8,
    flags: u8,
    lba: U32,
    group: u8,
    length: U16,
    control: u8,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Cdb16 {
    op: u8,
    /// Flags, or the service action for SERVICE ACTION IN(16).
    flags: u8,
    lba: U64,
    length: U32,
    group: u8,
    control: u8,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct ModeSense10Cdb {
    op: u8,
    flags: u8,
    page: u8,
    subpage: u8,
    reserved: [u8; 3],
    allocation_length: U16,
    control: u8,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct ReportLunsCdb {
    op: u8,
    reserved: u8,
    select_report: u8,
    reserved2: [u8; 3],
    allocation_length: U32,
    reserved3: u8,
    control: u8,
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct UnmapHeader {
    data_length: U16,
    descriptor_data_length: U16,
    reserved: [u8; 4],
}

#[derive(FromBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct UnmapDescriptor {
    lba: U64,
    blocks: U32,
    reserved: [u8; 4],
}

/// Reads a CDB layout from the 16 CDB bytes (every layout here fits in 16).
fn view<T: FromBytes + KnownLayout + Immutable>(cdb: &[u8; 16]) -> Option<&T> {
    T::ref_from_prefix(cdb).ok().map(|(v, _)| v)
}

const WRITE_PROTECTED: u8 = 0x27;
const LBA_OUT_OF_RANGE: u8 = 0x21;
const INVALID_OPCODE: u8 = 0x20;
const INVALID_FIELD: u8 = 0x24;
const LU_NOT_SUPPORTED: u8 = 0x25;
const PARAMETER_LIST_LENGTH: u8 = 0x1a;

impl Device<'_> {
    /// Decides what to do with `cdb` sent to `lun` (`None`: not a single-level LUN).
    pub(crate) fn plan(&self, lun: Option<u64>, cdb: &[u8; 16]) -> Plan {
        let op = cdb[0];
        match (op, lun) {
            (0x12, _) => Plan::Done(self.inquiry(lun, cdb)),
            (0xa0, _) => Plan::Done(report_luns(cdb)),
            (_, Some(0)) => Plan::Done(match op {
                0x00 => Outcome::good(Bytes::new()),
                _ => Outcome::illegal(INVALID_OPCODE),
            }),
            (_, Some(1)) => self.plan_disk(cdb),
            _ => Plan::Done(Outcome::illegal(LU_NOT_SUPPORTED)),
        }
    }

    fn plan_disk(&self, cdb: &[u8; 16]) -> Plan {
        let done = Plan::Done;
        match cdb[0] {
            0x00 => done(Outcome::good(Bytes::new())),
            0x25 => done(Outcome::good(pages::read_capacity10(self.config))),
            0x9e => done(self.service_action_in(cdb)),
            0x5a => done(self.mode_sense10(cdb)),
            0x28 => self.with_cdb10(cdb, |d, lba, n| done(d.read(lba, n))),
            0x88 => self.with_cdb16(cdb, |d, lba, n| done(d.read(lba, n))),
            0x2a => self.with_cdb10(cdb, Device::write),
            0x8a => self.with_cdb16(cdb, Device::write),
            0x35 => self.with_cdb10(cdb, |d, lba, n| done(d.sync(lba, n))),
            0x91 => self.with_cdb16(cdb, |d, lba, n| done(d.sync(lba, n))),
            0x93 => self.write_same16(cdb),
            0x42 => self.unmap(cdb),
            _ => done(Outcome::illegal(INVALID_OPCODE)),
        }
    }

    fn with_cdb10(&self, cdb: &[u8; 16], f: impl FnOnce(&Self, u64, u64) -> Plan) -> Plan {
        match view::<Cdb10>(cdb) {
            Some(c) => f(self, u64::from(c.lba.get()), u64::from(c.length.get())),
            None => Plan::Done(Outcome::illegal(INVALID_FIELD)),
        }
    }

    fn with_cdb16(&self, cdb: &[u8; 16], f: impl FnOnce(&Self, u64, u64) -> Plan) -> Plan {
        match view::<Cdb16>(cdb) {
            Some(c) => f(self, c.lba.get(), u64::from(c.length.get())),
            None => Plan::Done(Outcome::illegal(INVALID_FIELD)),
        }
    }

    fn inquiry(&self, lun: Option<u64>, cdb: &[u8; 16]) -> Outcome {
        let Some(c) = view::<InquiryCdb>(cdb) else {
            return Outcome::illegal(INVALID_FIELD);
        };
        let alloc = usize::from(c.allocation_length.get());
        let data = match (c.evpd & 0x01 != 0, lun) {
            (false, _) if c.page != 0 => return Outcome::illegal(INVALID_FIELD),
            (false, Some(0)) => pages::standard_inquiry(pages::CONTROLLER),
            (false, Some(1)) => pages::standard_inquiry(pages::DISK),
            (false, _) => pages::standard_inquiry(pages::NO_LUN),
            (true, Some(lun @ (0 | 1))) => match pages::vpd(self.config, lun, c.page) {
                Some(page) => page,
                None => return Outcome::illegal(INVALID_FIELD),
            },
            (true, _) => return Outcome::illegal(LU_NOT_SUPPORTED),
        };
        Outcome::good(cut(data, alloc))
    }

    fn service_action_in(&self, cdb: &[u8; 16]) -> Outcome {
        match view::<Cdb16>(cdb) {
            Some(c) if c.flags & 0x1f == 0x10 => {
                let alloc = usize::try_from(c.length.get()).unwrap_or(usize::MAX);
                Outcome::good(cut(pages::read_capacity16(self.config), alloc))
            }
            _ => Outcome::illegal(INVALID_FIELD),
        }
    }

    fn mode_sense10(&self, cdb: &[u8; 16]) -> Outcome {
        let Some(c) = view::<ModeSense10Cdb>(cdb) else {
            return Outcome::illegal(INVALID_FIELD);
        };
        // Only current values (PC 0) of subpage 0 exist here.
        if c.page & 0xc0 != 0 || c.subpage != 0 {
            return Outcome::illegal(INVALID_FIELD);
        }
        match pages::mode_sense10(self.config, c.page & 0x3f) {
            Some(data) => Outcome::good(cut(data, usize::from(c.allocation_length.get()))),
            None => Outcome::illegal(INVALID_FIELD),
        }
    }

    /// Byte range of `blocks` blocks at `lba`, if they lie on the medium and the transfer is
    /// within MAXIMUM TRANSFER LENGTH.
    fn range(&self, lba: u64, blocks: u64, transfer: bool) -> Result<(u64, usize), Outcome> {
        let max = u64::from(self.config.max_transfer_blocks);
        if transfer && max != 0 && blocks > max {
            return Err(Outcome::illegal(INVALID_FIELD));
        }
        let end = lba.checked_add(blocks);
        if end.is_none_or(|end| end > self.config.block_count) {
            return Err(Outcome::illegal(LBA_OUT_OF_RANGE));
        }
        let bs = u64::from(self.config.block_size);
        let len = usize::try_from(blocks * bs).map_err(|_| Outcome::illegal(INVALID_FIELD))?;
        Ok((lba * bs, len))
    }

    fn read(&self, lba: u64, blocks: u64) -> Outcome {
        match self.range(lba, blocks, true) {
            Ok((offset, len)) => Outcome::good(self.disk.read(offset, len)),
            Err(e) => e,
        }
    }

    fn write(&self, lba: u64, blocks: u64) -> Plan {
        if self.config.write_protect {
            return Plan::Done(Outcome::check(SenseKey::DATA_PROTECT, WRITE_PROTECTED, 0));
        }
        match self.range(lba, blocks, true) {
            Ok((_, 0)) => Plan::Done(Outcome::good(Bytes::new())),
            Ok((offset, len)) => Plan::Write {
                len,
                op: WriteOp::Write { offset },
            },
            Err(e) => Plan::Done(e),
        }
    }

    fn sync(&self, lba: u64, blocks: u64) -> Outcome {
        // 0 blocks means "to the end of the medium".
        let blocks = if blocks == 0 {
            self.config.block_count.saturating_sub(lba)
        } else {
            blocks
        };
        match self.range(lba, blocks, false) {
            Ok(_) => Outcome::good(Bytes::new()),
            Err(e) => e,
        }
    }

    fn write_same16(&self, cdb: &[u8; 16]) -> Plan {
        let Some(c) = view::<Cdb16>(cdb) else {
            return Plan::Done(Outcome::illegal(INVALID_FIELD));
        };
        let (unmap, ndob) = (c.flags & 0x08 != 0, c.flags & 0x01 != 0);
        if unmap && !self.config.lbpws {
            return Plan::Done(Outcome::illegal(INVALID_FIELD));
        }
        if self.config.write_protect {
            return Plan::Done(Outcome::check(SenseKey::DATA_PROTECT, WRITE_PROTECTED, 0));
        }
        let lba = c.lba.get();
        let blocks = match u64::from(c.length.get()) {
            0 => self.config.block_count.saturating_sub(lba),
            n => n,
        };
        let (offset, len) = match self.range(lba, blocks, false) {
            Ok(r) => r,
            Err(e) => return Plan::Done(e),
        };
        let op = WriteOp::WriteSame {
            offset,
            len,
            zero: unmap || ndob,
        };
        if ndob {
            return Plan::Done(self.finish(op, &[]));
        }
        Plan::Write {
            len: self.config.block_size as usize,
            op,
        }
    }

    fn unmap(&self, cdb: &[u8; 16]) -> Plan {
        if !self.config.lbpu {
            return Plan::Done(Outcome::illegal(INVALID_OPCODE));
        }
        if self.config.write_protect {
            return Plan::Done(Outcome::check(SenseKey::DATA_PROTECT, WRITE_PROTECTED, 0));
        }
        match view::<Cdb10>(cdb).map(|c| usize::from(c.length.get())) {
            Some(0) => Plan::Done(Outcome::good(Bytes::new())),
            Some(len) => Plan::Write {
                len,
                op: WriteOp::Unmap,
            },
            None => Plan::Done(Outcome::illegal(INVALID_FIELD)),
        }
    }

    /// Completes a command with its Data-Out (`data` may be shorter than asked for when the
    /// initiator sent less).
    pub(crate) fn finish(&self, op: WriteOp, data: &[u8]) -> Outcome {
        match op {
            WriteOp::Write { offset } => {
                self.disk.write(offset, data);
                Outcome {
                    written: data.len() as u64,
                    ..Outcome::good(Bytes::new())
                }
            }
            WriteOp::WriteSame { offset, len, zero } => {
                let pattern = if zero { &[][..] } else { data };
                self.disk.write_same(offset, pattern, len);
                Outcome {
                    written: len as u64,
                    ..Outcome::good(Bytes::new())
                }
            }
            WriteOp::Unmap => self.finish_unmap(data),
        }
    }

    fn finish_unmap(&self, list: &[u8]) -> Outcome {
        let Ok((header, rest)) = UnmapHeader::ref_from_prefix(list) else {
            return Outcome::good(Bytes::new());
        };
        let len = usize::from(header.descriptor_data_length.get());
        let Some(body) = rest.get(..len) else {
            return Outcome::illegal(PARAMETER_LIST_LENGTH);
        };
        let Ok(descriptors) = <[UnmapDescriptor]>::ref_from_bytes(body) else {
            return Outcome::illegal(PARAMETER_LIST_LENGTH);
        };
        let mut ranges = Vec::with_capacity(descriptors.len());
        for d in descriptors {
            match self.range(d.lba.get(), u64::from(d.blocks.get()), false) {
                Ok(r) => ranges.push(r),
                Err(e) => return e,
            }
        }
        for (offset, len) in ranges {
            self.disk.write_same(offset, &[], len);
        }
        Outcome::good(Bytes::new())
    }
}

fn report_luns(cdb: &[u8; 16]) -> Outcome {
    match view::<ReportLunsCdb>(cdb) {
        Some(c) if c.allocation_length.get() >= 16 => {
            let alloc = usize::try_from(c.allocation_length.get()).unwrap_or(usize::MAX);
            Outcome::good(cut(pages::report_luns(), alloc))
        }
        _ => Outcome::illegal(INVALID_FIELD),
    }
}

/// `data` cut to an allocation length.
fn cut(mut data: Bytes, alloc: usize) -> Bytes {
    data.truncate(alloc);
    data
}

#[cfg(test)]
mod tests {
    use sanshim_initiator::scsi::{Cdb, UnmapRange, unmap_parameter_list};

    use super::*;

    fn sense_of(plan: Plan) -> (u8, u8) {
        match plan {
            Plan::Done(Outcome { sense: Some(s), .. }) => (s.key.0, s.asc),
            other => panic!("expected CHECK CONDITION, got {other:?}"),
        }
    }

    #[test]
    fn dispatch_and_errors() {
        let config = TargetConfig {
            block_count: 64,
            max_transfer_blocks: 8,
            ..TargetConfig::default()
        };
        let disk = Disk::new(config.capacity() as usize);
        let d = Device {
            config: &config,
            disk: &disk,
        };
        let one = Some(1);
        assert_eq!(
            sense_of(d.plan(one, &Cdb::read10(60, 8).padded())),
            (5, 0x21)
        );
        assert_eq!(
            sense_of(d.plan(one, &Cdb::read16(0, 9).padded())),
            (5, 0x24)
        );
        assert_eq!(sense_of(d.plan(one, &[0xee; 16])), (5, 0x20));
        assert_eq!(
            sense_of(d.plan(Some(0), &Cdb::read10(0, 1).padded())),
            (5, 0x20)
        );
        assert_eq!(
            sense_of(d.plan(Some(7), &Cdb::read10(0, 1).padded())),
            (5, 0x25)
        );
        let plan = d.plan(one, &Cdb::write16(2, 2, false).padded());
        let Plan::Write { len: 1024, op } = plan else {
            panic!("{plan:?}")
        };
        d.finish(op, &[7; 1024]);
        assert_eq!(&disk.read(1024, 1024)[..], &[7; 1024][..]);
        let list = unmap_parameter_list(&[UnmapRange { lba: 2, blocks: 1 }]).unwrap();
        let plan = d.plan(one, &Cdb::unmap(list.len() as u16).padded());
        let Plan::Write { op, .. } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(d.finish(op, &list).status, ScsiStatus::GOOD);
        assert_eq!(&disk.read(1024, 1024)[..512], &[0; 512][..]);
        assert_eq!(&disk.read(1536, 512)[..], &[7; 512][..]);
    }
}
