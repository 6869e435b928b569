//! The legacy-BIOS source: a scan of physical memory 0x80000–0xFFFFF in 16-byte steps
//! (iBFT specification 1.03 §1.4.3.1; the Linux `iscsi_ibft_find.c` scan), skipping the VGA
//! hole 0xA0000–0xBFFFF.
//!
//! Memory is read page by page with positioned reads (no `mmap`, no `unsafe`); a page that
//! cannot be read counts as zeros. A candidate is accepted only when its length fits the
//! window, the table parses and its checksum holds: a stray "iBFT" in an option ROM's data must
//! not win. The first such candidate wins, as in the kernel.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Found, SourceError, SourceKind, io_error};
use crate::model::Ibft;
use crate::view::SIGNATURES;

/// The scanned windows of physical memory, `[start, end)`.
pub const MEM_WINDOWS: [(u64, u64); 2] = [(0x8_0000, 0xA_0000), (0xC_0000, 0x10_0000)];

const PAGE: u64 = 4096;
const STEP: usize = 16;
/// Rejected candidates named in the error; a window full of signatures must not flood it.
const MAX_REASONS: usize = 8;

/// Scans `path` (`/dev/mem`, or a file whose offsets stand for physical addresses).
///
/// # Errors
/// [`SourceError::Absent`] / [`SourceError::Permission`] / [`SourceError::Io`] when memory
/// cannot be read, [`SourceError::NoSignature`] when no signature is there,
/// [`SourceError::Rejected`] when every candidate failed its checks.
pub fn scan_mem(path: &Path) -> Result<Found, SourceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reasons = Vec::new();
    let mut rejected = 0usize;
    for (start, end) in MEM_WINDOWS {
        let window = read_window(&file, start, end).map_err(|e| io_error(path, e))?;
        for offset in (0..window.len()).step_by(STEP) {
            let candidate = window.get(offset..).unwrap_or_default();
            if !SIGNATURES.iter().any(|s| candidate.starts_with(s)) {
                continue;
            }
            let address = start + offset as u64;
            match check(candidate) {
                Ok(parsed) => {
                    let location = format!("{} at {address:#x}", path.display());
                    return Ok(Found {
                        kind: SourceKind::Mem,
                        location,
                        parsed,
                    });
                }
                Err(reason) => {
                    rejected += 1;
                    if reasons.len() < MAX_REASONS {
                        reasons.push(format!("{address:#x}: {reason}"));
                    }
                }
            }
        }
    }
    if rejected == 0 {
        return Err(SourceError::NoSignature {
            path: path.to_owned(),
        });
    }
    if rejected > reasons.len() {
        reasons.push(format!("{} more", rejected - reasons.len()));
    }
    Err(SourceError::Rejected {
        path: path.to_owned(),
        reasons,
    })
}

/// Checks a candidate that starts with a signature; `candidate` runs to the window's end, so
/// a length reaching past it is a truncation error.
fn check(candidate: &[u8]) -> Result<crate::Parsed, String> {
    let parsed = Ibft::parse(candidate).map_err(|e| e.to_string())?;
    if parsed.ibft.header.checksum_ok == Some(false) {
        return Err("bad checksum".to_owned());
    }
    Ok(parsed)
}

/// Reads `[start, end)` page by page. Unreadable pages and bytes past the end of a short file
/// are zeros; an error is returned only when no page at all could be read.
fn read_window(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(end - start).unwrap_or(0);
    let mut window = vec![0u8; len];
    let mut last_error = None;
    let mut any_read = false;
    for (page, chunk) in window.chunks_mut(PAGE as usize).enumerate() {
        let at = start + page as u64 * PAGE;
        match read_page(file, at, chunk) {
            Ok(()) => any_read = true,
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) if !any_read => Err(e),
        _ => Ok(window),
    }
}

fn read_page(file: &File, mut at: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, at) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                buf = buf.get_mut(n..).unwrap_or_default();
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
