//! Read buffers reused within one connection: the buffer a reply's data went out from is
//! handed to the next read of the same length, so reads neither zero-fill fresh memory nor
//! fault in new pages for every request (a client such as nbdcopy or the kernel asks for the
//! same few lengths over and over).
//!
//! A buffer taken from the pool holds the data of an earlier read of the same export; the
//! device overwrites every byte of it before a successful read returns (a short read is an
//! error, and a failed read's buffer is never sent), so old data never reaches a client.

use std::sync::Mutex;

use bytes::BytesMut;

/// Buffers shorter than this are not kept: small allocations are cheap.
const MIN_LEN: usize = 4096;
/// Buffers longer than this are not kept: rare, and too much memory to sit idle.
const MAX_LEN: usize = 4 << 20;
/// Bytes the idle buffers of one connection may hold.
const MAX_IDLE_BYTES: usize = 8 << 20;

/// Idle read buffers of one connection.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<BytesMut>,
    bytes: usize,
}

impl BufferPool {
    /// A buffer of exactly `len` bytes: an idle one of that length, else a fresh zeroed one.
    pub fn take(&self, len: usize) -> BytesMut {
        if (MIN_LEN..=MAX_LEN).contains(&len) {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = idle.buffers.iter().rposition(|b| b.len() == len) {
                let buf = idle.buffers.swap_remove(i);
                idle.bytes -= len;
                return buf;
            }
        }
        BytesMut::zeroed(len)
    }

    /// Keeps a buffer whose data was sent, for a later [`BufferPool::take`] (or drops it when
    /// it is of a length not kept or the pool is full).
    pub fn give(&self, buf: BytesMut) {
        let len = buf.len();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.bytes + len <= MAX_IDLE_BYTES {
            idle.bytes += len;
            idle.buffers.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_serves_the_next_read_of_its_length() {
        let pool = BufferPool::default();
        let mut buf = pool.take(8192);
        assert_eq!(buf.len(), 8192);
        buf.fill(7);
        let at = buf.as_ptr();
        pool.give(buf);
        // Another length gets a fresh, zeroed buffer.
        let other = pool.take(4096);
        assert!(other.iter().all(|&b| b == 0));
        assert_ne!(other.as_ptr(), at);
        let again = pool.take(8192);
        assert_eq!(again.as_ptr(), at, "the idle buffer was not reused");
        assert_eq!(again.len(), 8192);
        // Taken: the pool is empty again.
        assert_ne!(pool.take(8192).as_ptr(), at);
    }

    #[test]
    fn idle_memory_is_bounded_and_odd_sizes_are_not_kept() {
        let pool = BufferPool::default();
        for _ in 0..(MAX_IDLE_BYTES / MAX_LEN + 3) {
            pool.give(BytesMut::zeroed(MAX_LEN));
        }
        pool.give(BytesMut::zeroed(MAX_LEN + 512));
        pool.give(BytesMut::zeroed(512));
        let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(idle.bytes, MAX_IDLE_BYTES);
        assert_eq!(idle.buffers.len(), MAX_IDLE_BYTES / MAX_LEN);
    }
}
