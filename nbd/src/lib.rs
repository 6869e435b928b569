//! NBD server serving any [`sanshim_blockdev::BlockDevice`] (NBD protocol, doc/proto.md of the
//! NetworkBlockDevice project), and attachment of the kernel's `/dev/nbdX` to it.
#![deny(unsafe_code)]
