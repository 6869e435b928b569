//! A table writer (iBFT specification 1.03 §3), for tests, proptest and the fuzz round trip.
//!
//! [`emit`] builds a table from an owned [`Ibft`]; [`Layout`] picks how, including the ugly
//! ways firmware does it: more than two offset pairs, packed or oddly aligned structures,
//! strings before the structures, NULs counted in string lengths, `::ffff:0.0.0.0` for absent
//! addresses, unused slots filled with flag-less structures, over-long structures, a wrong
//! checksum. Everything [`Ibft::parse`](crate::Ibft::parse) reads back equals the input, except
//! structures without "block valid"/"boot selected", which the parser ignores by design.

use zerocopy::IntoBytes;
use zerocopy::little_endian::{U16, U32};

use crate::code::StructureId;
use crate::model::{Ibft, Initiator, Nic, Target, encode_addr};
use crate::raw::{self, CONTROL_OFFSET, CONTROL_PAIRS_OFFSET, StringRef};

/// How [`emit`] lays a table out. `Layout::default()` is iPXE's way: two pairs (more when
/// needed), 16-byte aligned structures, strings at the end, NUL-terminated.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Layout {
    /// Minimum number of NIC/target offset pairs; at least 2 and enough for the table.
    pub pairs: usize,
    /// Alignment of structures (and of the string block), 1 for packed.
    pub align: usize,
    /// Put the strings right after the control structure, before the structures.
    pub strings_first: bool,
    /// Count the terminating NUL in string lengths, as some firmware does.
    pub nul_in_length: bool,
    /// Write absent addresses as `::ffff:0.0.0.0` instead of all zeros.
    pub mapped_zero_absent: bool,
    /// Fill slots without a NIC or target with a structure whose flags are 0.
    pub unused_structures: bool,
    /// Extra zero bytes declared at the end of each initiator, NIC and target structure.
    pub structure_padding: u16,
    /// Store a wrong checksum.
    pub bad_checksum: bool,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            pairs: 2,
            align: 16,
            strings_first: false,
            nul_in_length: false,
            mapped_zero_absent: false,
            unused_structures: false,
            structure_padding: 0,
            bad_checksum: false,
        }
    }
}

/// Why a table could not be written.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// An offset or a string length does not fit the format's 16 bits.
    #[error("table needs {needed} bytes; offsets and string lengths are 16-bit")]
    TooLarge {
        /// Bytes the table would need.
        needed: usize,
    },
    /// The OEM id is longer than 6 bytes or the OEM table id longer than 8.
    #[error("OEM id or OEM table id too long")]
    OemTooLong,
}

/// Writes `ibft` as a table laid out by `layout`.
///
/// # Errors
/// [`WriteError::TooLarge`] when the strings push an offset past 65535,
/// [`WriteError::OemTooLong`].
pub fn emit(ibft: &Ibft, layout: &Layout) -> Result<Vec<u8>, WriteError> {
    let mut writer = Writer::new(ibft, layout)?;
    writer.place();
    writer.finish()
}

/// Which structure a placed block holds.
enum Block<'a> {
    Initiator(&'a Initiator),
    Nic(Option<&'a Nic>, u8),
    Target(Option<&'a Target>, u8),
}

struct Writer<'a> {
    ibft: &'a Ibft,
    layout: &'a Layout,
    pairs: usize,
    strings: Vec<u8>,
    string_refs: Vec<(usize, usize)>,
    strings_at: usize,
    initiator_at: usize,
    slots: Vec<usize>,
    blocks: Vec<(usize, Block<'a>)>,
    end: usize,
}

impl<'a> Writer<'a> {
    fn new(ibft: &'a Ibft, layout: &'a Layout) -> Result<Self, WriteError> {
        if ibft.header.oem_id.len() > 6 || ibft.header.oem_table_id.len() > 8 {
            return Err(WriteError::OemTooLong);
        }
        let pairs = layout
            .pairs
            .max(2)
            .max(ibft.nics.len())
            .max(ibft.targets.len());
        let control_end = pairs
            .saturating_mul(4)
            .saturating_add(CONTROL_OFFSET + CONTROL_PAIRS_OFFSET);
        if control_end > usize::from(u16::MAX) {
            return Err(WriteError::TooLarge {
                needed: control_end,
            });
        }
        let mut writer = Writer {
            ibft,
            layout,
            pairs,
            strings: Vec::new(),
            string_refs: Vec::new(),
            strings_at: 0,
            initiator_at: 0,
            slots: vec![0; 2 * pairs],
            blocks: Vec::new(),
            end: control_end,
        };
        writer.collect_strings();
        Ok(writer)
    }

    /// Appends every string, in the order the structures are written, to the string block.
    fn collect_strings(&mut self) {
        let ibft = self.ibft;
        let mut all: Vec<Option<&str>> = Vec::new();
        all.extend(ibft.initiator.iter().map(|i| i.name.as_deref()));
        all.extend(ibft.nics.iter().map(|n| n.hostname.as_deref()));
        for t in &ibft.targets {
            all.push(t.name.as_deref());
            all.push(t.chap_user.as_deref());
            all.push(t.chap_secret.as_ref().map(|s| s.expose()));
            all.push(t.reverse_chap_user.as_deref());
            all.push(t.reverse_chap_secret.as_ref().map(|s| s.expose()));
        }
        for s in all {
            let Some(s) = s.filter(|s| !s.is_empty()) else {
                self.string_refs.push((0, usize::MAX));
                continue;
            };
            let len = s.len() + usize::from(self.layout.nul_in_length);
            self.string_refs.push((len, self.strings.len()));
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
        }
    }

    fn align(&self, at: usize) -> usize {
        at.next_multiple_of(self.layout.align.max(1))
    }

    /// Reserves `len` aligned bytes and returns their offset.
    fn reserve(&mut self, len: usize) -> usize {
        let at = self.align(self.end);
        self.end = at + len;
        at
    }

    fn place(&mut self) {
        if self.layout.strings_first {
            self.strings_at = self.reserve(self.strings.len());
        }
        let pad = usize::from(self.layout.structure_padding);
        if let Some(initiator) = &self.ibft.initiator {
            self.initiator_at = self.reserve(size_of::<raw::Initiator>() + pad);
            self.blocks
                .push((self.initiator_at, Block::Initiator(initiator)));
        }
        for pair in 0..self.pairs {
            let nic = self.ibft.nics.get(pair);
            if nic.is_some() || self.layout.unused_structures {
                let at = self.reserve(size_of::<raw::Nic>() + pad);
                self.slots[2 * pair] = at;
                self.blocks.push((at, Block::Nic(nic, index_of(pair))));
            }
        }
        for pair in 0..self.pairs {
            let target = self.ibft.targets.get(pair);
            if target.is_some() || self.layout.unused_structures {
                let at = self.reserve(size_of::<raw::Target>() + pad);
                self.slots[2 * pair + 1] = at;
                self.blocks
                    .push((at, Block::Target(target, index_of(pair))));
            }
        }
        if !self.layout.strings_first {
            self.strings_at = self.reserve(self.strings.len());
        }
    }

    fn finish(self) -> Result<Vec<u8>, WriteError> {
        let too_large = WriteError::TooLarge { needed: self.end };
        let max = usize::from(u16::MAX);
        let longest = self
            .string_refs
            .iter()
            .map(|(len, _)| *len)
            .max()
            .unwrap_or(0);
        if self.strings_at + self.strings.len() > max || self.end > max || longest > max {
            return Err(too_large);
        }
        let mut table = vec![0u8; self.end];
        put(&mut table, 0, self.header().as_bytes());
        put(&mut table, CONTROL_OFFSET, self.control().as_bytes());
        put(&mut table, self.strings_at, &self.strings);
        let mut refs = self
            .string_refs
            .iter()
            .map(|&(len, rel)| self.string_ref(len, rel));
        for (at, block) in &self.blocks {
            let bytes = match block {
                Block::Initiator(i) => self.initiator(i, &mut refs).as_bytes().to_vec(),
                Block::Nic(n, index) => self.nic(*n, *index, &mut refs).as_bytes().to_vec(),
                Block::Target(t, index) => self.target(*t, *index, &mut refs).as_bytes().to_vec(),
            };
            put(&mut table, *at, &bytes);
        }
        let sum = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
        table[9] = 0u8
            .wrapping_sub(sum)
            .wrapping_add(u8::from(self.layout.bad_checksum));
        Ok(table)
    }

    fn string_ref(&self, len: usize, rel: usize) -> StringRef {
        if len == 0 {
            return StringRef {
                length: U16::ZERO,
                offset: U16::ZERO,
            };
        }
        // finish() checked that offsets and lengths fit in 16 bits.
        let offset = u16::try_from(self.strings_at + rel).unwrap_or(u16::MAX);
        StringRef {
            length: U16::new(u16::try_from(len).unwrap_or(u16::MAX)),
            offset: offset.into(),
        }
    }

    fn header(&self) -> raw::TableHeader {
        let header = &self.ibft.header;
        raw::TableHeader {
            signature: header.signature,
            length: U32::new(u32::try_from(self.end).unwrap_or(u32::MAX)),
            revision: header.revision.unwrap_or(1),
            checksum: 0,
            oem_id: padded(&header.oem_id),
            oem_table_id: padded(&header.oem_table_id),
            oem_revision: U32::ZERO,
            creator_id: U32::ZERO,
            creator_revision: U32::ZERO,
            reserved: [0; 12],
        }
    }

    /// The control structure with all its offset pairs.
    fn control(&self) -> Vec<u8> {
        let len = CONTROL_PAIRS_OFFSET + 4 * self.pairs;
        let header = self.struct_header(StructureId::CONTROL, len, 0, self.ibft.control_flags);
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&offset16(self.initiator_at).to_le_bytes());
        for slot in &self.slots {
            bytes.extend_from_slice(&offset16(*slot).to_le_bytes());
        }
        bytes
    }

    fn struct_header(
        &self,
        id: StructureId,
        len: usize,
        index: u8,
        flags: u8,
    ) -> raw::StructHeader {
        let length = U16::new(u16::try_from(len).unwrap_or(u16::MAX));
        raw::StructHeader {
            id: id.0,
            version: 1,
            length,
            index,
            flags,
        }
    }

    fn padded_len<T>(&self) -> usize {
        size_of::<T>() + usize::from(self.layout.structure_padding)
    }

    fn addr(&self, addr: Option<std::net::IpAddr>) -> raw::Addr {
        match addr {
            None if self.layout.mapped_zero_absent => {
                std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets()
            }
            _ => encode_addr(addr),
        }
    }

    fn initiator(
        &self,
        i: &Initiator,
        refs: &mut impl Iterator<Item = StringRef>,
    ) -> raw::Initiator {
        let len = self.padded_len::<raw::Initiator>();
        raw::Initiator {
            header: self.struct_header(StructureId::INITIATOR, len, i.index, i.flags),
            isns: self.addr(i.isns),
            slp: self.addr(i.slp),
            primary_radius: self.addr(i.primary_radius),
            secondary_radius: self.addr(i.secondary_radius),
            name: next_ref(refs),
        }
    }

    fn nic(
        &self,
        n: Option<&Nic>,
        index: u8,
        refs: &mut impl Iterator<Item = StringRef>,
    ) -> raw::Nic {
        let len = self.padded_len::<raw::Nic>();
        let Some(n) = n else {
            return raw::Nic {
                header: self.struct_header(StructureId::NIC, len, index, 0),
                ..zeroed()
            };
        };
        raw::Nic {
            header: self.struct_header(StructureId::NIC, len, n.index, n.flags),
            ip: self.addr(n.ip),
            prefix: n.prefix,
            origin: n.origin.0,
            gateway: self.addr(n.gateway),
            primary_dns: self.addr(n.primary_dns),
            secondary_dns: self.addr(n.secondary_dns),
            dhcp: self.addr(n.dhcp),
            vlan: U16::new(n.vlan),
            mac: n.mac.0,
            pci_bdf: U16::new(n.pci_bdf.map_or(0, |p| p.0)),
            hostname: next_ref(refs),
        }
    }

    fn target(
        &self,
        t: Option<&Target>,
        index: u8,
        refs: &mut impl Iterator<Item = StringRef>,
    ) -> raw::Target {
        let len = self.padded_len::<raw::Target>();
        let Some(t) = t else {
            let header = self.struct_header(StructureId::TARGET, len, index, 0);
            return raw::Target { header, ..zeroed() };
        };
        raw::Target {
            header: self.struct_header(StructureId::TARGET, len, t.index, t.flags),
            ip: self.addr(t.ip),
            port: U16::new(t.port),
            lun: t.lun.0,
            chap_type: t.chap_type.0,
            nic: t.nic,
            name: next_ref(refs),
            chap_name: next_ref(refs),
            chap_secret: next_ref(refs),
            reverse_chap_name: next_ref(refs),
            reverse_chap_secret: next_ref(refs),
        }
    }
}

fn zeroed<T: zerocopy::FromZeros>() -> T {
    T::new_zeroed()
}

fn next_ref(refs: &mut impl Iterator<Item = StringRef>) -> StringRef {
    refs.next().unwrap_or(StringRef {
        length: U16::ZERO,
        offset: U16::ZERO,
    })
}

/// Structure indexes beyond 255 cannot be written; unused filler structures wrap.
fn index_of(pair: usize) -> u8 {
    u8::try_from(pair % 256).unwrap_or(0)
}

fn offset16(at: usize) -> u16 {
    u16::try_from(at).unwrap_or(u16::MAX)
}

fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, src) in out.iter_mut().zip(text.as_bytes()) {
        *dst = *src;
    }
    out
}

/// Copies `bytes` into `table` at `at`; the caller sized `table` to hold every block.
fn put(table: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = table.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
