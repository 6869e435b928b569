//! [`Bytewise`] against a model (a byte vector), alone and under concurrent overlapping
//! requests on a device whose operations take varying (virtual) time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::{Fault, FaultDisk, MemDisk, Op};

/// A device whose reads and writes each wait a pseudo-random 0–7 ms of tokio time, so that
/// concurrent requests interleave differently for each seed.
struct Jitter {
    inner: MemDisk,
    state: AtomicU64,
}

impl Jitter {
    fn new(block_size: u32, blocks: u64, seed: u64) -> Self {
        Jitter {
            inner: MemDisk::new(block_size, blocks).unwrap(),
            state: AtomicU64::new(seed | 1),
        }
    }

    async fn pause(&self) {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(x % 8)).await;
    }
}

impl BlockDevice for Jitter {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }
    async fn read(&self, lba: u64, buf: BytesMut) -> Result<BytesMut, BlockError> {
        self.pause().await;
        self.inner.read(lba, buf).await
    }
    async fn write(&self, lba: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        self.pause().await;
        self.inner.write(lba, data, fua).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.inner.flush().await
    }
    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.pause().await;
        self.inner.discard(lba, blocks).await
    }
    async fn write_zeroes(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        self.pause().await;
        self.inner.write_zeroes(lba, blocks, unmap).await
    }
    async fn probe(&self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// One request against both the device and the model.
#[derive(Clone, Debug)]
enum Req {
    Write { offset: u64, len: usize, seed: u8 },
    Zero { offset: u64, len: u64 },
    Discard { offset: u64, len: u64 },
    Read { offset: u64, len: usize },
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(7)) | 1)
        .collect()
}

/// Runs `req` on `dev` and the model; returns a description of the first difference.
async fn apply<D: BlockDevice>(
    dev: &Bytewise<D>,
    model: &mut [u8],
    req: &Req,
) -> Result<(), String> {
    let bs = dev.geometry().block_size as u64;
    match *req {
        Req::Write { offset, len, seed } => {
            let d = data(len, seed);
            dev.write(offset, Bytes::from(d.clone()), seed & 1 == 1)
                .await
                .map_err(|e| format!("{req:?}: {e}"))?;
            model[offset as usize..offset as usize + len].copy_from_slice(&d);
        }
        Req::Zero { offset, len } => {
            dev.write_zeroes(offset, len, offset & 1 == 1, false)
                .await
                .map_err(|e| format!("{req:?}: {e}"))?;
            model[offset as usize..(offset + len) as usize].fill(0);
        }
        Req::Discard { offset, len } => {
            dev.discard(offset, len)
                .await
                .map_err(|e| format!("{req:?}: {e}"))?;
            // MemDisk zeroes what it discards; only whole blocks inside may be discarded.
            let start = offset.div_ceil(bs) * bs;
            let end = (offset + len) / bs * bs;
            if end > start {
                model[start as usize..end as usize].fill(0);
            }
        }
        Req::Read { offset, len } => {
            let got = dev
                .read(offset, len)
                .await
                .map_err(|e| format!("{req:?}: {e}"))?;
            if got[..] != model[offset as usize..offset as usize + len] {
                return Err(format!("{req:?} returned other data than the model"));
            }
        }
    }
    let size = model.len();
    let whole = dev.read(0, size).await.map_err(|e| e.to_string())?;
    match whole.iter().zip(model.iter()).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(at) => Err(format!("after {req:?} the device differs at byte {at}")),
    }
}

#[test]
fn test_edge_cases_match_the_model() {
    for bs in [512u32, 4096] {
        let b = u64::from(bs);
        let blocks = 32768 / b;
        let dev = Bytewise::new(MemDisk::new(bs, blocks).unwrap());
        let mut model = vec![0u8; (b * blocks) as usize];
        let size = b * blocks;
        let reqs = [
            Req::Write {
                offset: 1,
                len: 1,
                seed: 1,
            },
            Req::Write {
                offset: 512,
                len: 512,
                seed: 2,
            },
            Req::Write {
                offset: b - 1,
                len: 2,
                seed: 3,
            },
            Req::Write {
                offset: b / 2,
                len: 3 * b as usize,
                seed: 4,
            },
            Req::Write {
                offset: 0,
                len: b as usize,
                seed: 5,
            },
            Req::Write {
                offset: size - 3,
                len: 3,
                seed: 6,
            },
            Req::Read {
                offset: 3,
                len: 5000,
            },
            Req::Read {
                offset: size - 1,
                len: 1,
            },
            Req::Zero {
                offset: 100,
                len: 2 * b + 7,
            },
            Req::Zero {
                offset: b + 1,
                len: 10,
            },
            Req::Write {
                offset: 0,
                len: size as usize,
                seed: 7,
            },
            Req::Discard {
                offset: 10,
                len: 3 * b,
            },
            Req::Discard { offset: 1, len: 10 },
            Req::Zero {
                offset: 0,
                len: size,
            },
        ];
        paused_runtime().block_on(async {
            for r in &reqs {
                apply(&dev, &mut model, r).await.unwrap();
            }
        });
        let s = dev.stats();
        assert!(s.read_modify_writes >= 6 && s.unaligned_reads >= 1, "{s:?}");
    }
}

#[test]
fn test_bounds_fua_and_failures() {
    paused_runtime().block_on(async {
        let dev = Bytewise::new(MemDisk::new(4096, 4).unwrap());
        let kind = |r: Result<(), BlockError>| r.err().map(|e| e.kind());
        let oor = Some(ErrorKind::OutOfRange);
        assert_eq!(
            kind(dev.write(16383, Bytes::from_static(&[1, 2]), false).await),
            oor
        );
        assert_eq!(kind(dev.read(u64::MAX, 1).await.map(drop)), oor);
        assert_eq!(kind(dev.write_zeroes(1, u64::MAX, false, false).await), oor);
        assert_eq!(kind(dev.discard(16384, 1).await), oor);
        // Empty requests inside the device touch nothing.
        assert_eq!(dev.read(16384, 0).await.unwrap().len(), 0);
        dev.write(16384, Bytes::new(), true).await.unwrap();
        assert_eq!(dev.device().stats(), crate::MemDiskStats::default());
        // FUA covers the one merged write.
        dev.write(4000, Bytes::from(vec![9u8; 200]), true)
            .await
            .unwrap();
        let s = dev.device().stats();
        assert_eq!((s.writes, s.fua_writes, s.reads), (1, 1, 2));

        // An edge that cannot be read: nothing is written.
        let faulty = Bytewise::new(FaultDisk::new(MemDisk::new(4096, 4).unwrap()));
        faulty
            .device()
            .inject(Fault::fail(ErrorKind::Medium).on(Op::Read));
        let r = faulty.write(10, Bytes::from_static(&[1]), false).await;
        assert_eq!(kind(r), Some(ErrorKind::Medium));
        assert_eq!(faulty.device().inner().stats().writes, 0);

        // FAST_ZERO on a device that writes zero buffers: refused, nothing touched.
        let slow = Bytewise::new(
            MemDisk::builder(4096, 4)
                .can_write_zeroes(false)
                .build()
                .unwrap(),
        );
        slow.write(0, Bytes::from(vec![5u8; 16384]), false)
            .await
            .unwrap();
        for (offset, len) in [(1, 10), (100, 3 * 4096)] {
            let r = slow.write_zeroes(offset, len, false, true).await;
            assert_eq!(kind(r), Some(ErrorKind::Unsupported), "{offset}+{len}");
        }
        assert!(slow.read(0, 16384).await.unwrap().iter().all(|&b| b == 5));
        slow.write_zeroes(100, 3 * 4096, false, false)
            .await
            .unwrap();
        let back = slow.read(0, 16384).await.unwrap();
        assert!(back[..100].iter().all(|&b| b == 5) && back[100..12388].iter().all(|&b| b == 0));
        assert!(back[12388..].iter().all(|&b| b == 5));
    });
}

/// Many unaligned writes at once on distinct bytes that share blocks, with aligned writes on
/// other blocks among them: every byte written is there afterwards (no update lost to a
/// read-modify-write that read its block before another one wrote it).
#[test]
fn test_concurrent_writes_sharing_blocks_lose_nothing() {
    for seed in 1..20u64 {
        let dev = Arc::new(Bytewise::new(Jitter::new(4096, 8, seed)));
        let mut model = vec![0u8; 8 * 4096];
        let mut writes = Vec::new();
        // 48 writers of 256 bytes, interleaved over blocks 0-2 (they straddle 1 and 2).
        for w in 0..48u64 {
            let offset = w * 256 + 100;
            writes.push((offset, data(256, w as u8 + 1)));
        }
        // Aligned writes on blocks 4-7.
        for w in 0..4u64 {
            writes.push(((4 + w) * 4096, data(4096, 200 + w as u8)));
        }
        for (offset, d) in &writes {
            model[*offset as usize..*offset as usize + d.len()].copy_from_slice(d);
        }
        paused_runtime().block_on(async {
            let tasks: Vec<_> = writes
                .into_iter()
                .map(|(offset, d)| {
                    let dev = Arc::clone(&dev);
                    tokio::spawn(async move { dev.write(offset, Bytes::from(d), false).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let back = dev.read(0, model.len()).await.unwrap();
            let lost = back.iter().zip(&model).position(|(a, b)| a != b);
            assert_eq!(lost, None, "seed {seed}: an update was lost");
        });
        assert_eq!(dev.locks.len(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Sequences of any requests, one at a time, at 512- and 4096-byte blocks.
    #[test]
    fn proptest_requests_match_the_model(
        big in any::<bool>(),
        reqs in prop::collection::vec((0u8..4, 0u64..32768, 0u64..9000, any::<u8>()), 1..24),
    ) {
        let bs = if big { 4096 } else { 512 };
        let size = 32768u64;
        let dev = Bytewise::new(MemDisk::new(bs, size / u64::from(bs)).unwrap());
        let mut model = vec![0u8; size as usize];
        let result = paused_runtime().block_on(async {
            for (kind, offset, len, seed) in reqs {
                let len = len.min(size - offset);
                let req = match kind {
                    0 => Req::Write { offset, len: len as usize, seed },
                    1 => Req::Zero { offset, len },
                    2 => Req::Discard { offset, len },
                    _ => Req::Read { offset, len: len as usize },
                };
                apply(&dev, &mut model, &req).await?;
            }
            Ok::<(), String>(())
        });
        prop_assert_eq!(result, Ok(()));
    }

    /// Concurrent overlapping writes and write-zeroes, aligned or not: each byte ends up with
    /// the value of one of the requests that covered it (or zero when none did), and the
    /// bytes no request covered are untouched.
    #[test]
    fn proptest_concurrent_overlapping_requests(
        seed in any::<u64>(),
        reqs in prop::collection::vec((any::<bool>(), 0u64..16384, 1u64..6000), 2..16),
    ) {
        let size = 16384u64;
        let dev = Arc::new(Bytewise::new(Jitter::new(4096, size / 4096, seed)));
        let reqs: Vec<(bool, u64, u64, u8)> = reqs
            .into_iter()
            .enumerate()
            .map(|(i, (zero, offset, len))| (zero, offset, len.min(size - offset), i as u8 + 1))
            .collect();
        let back = paused_runtime().block_on(async {
            let tasks: Vec<_> = reqs
                .iter()
                .map(|&(zero, offset, len, value)| {
                    let dev = Arc::clone(&dev);
                    tokio::spawn(async move {
                        if zero {
                            dev.write_zeroes(offset, len, false, false).await
                        } else {
                            dev.write(offset, Bytes::from(vec![value; len as usize]), false).await
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            dev.read(0, size as usize).await.unwrap()
        });
        for (at, &b) in back.iter().enumerate() {
            let at = at as u64;
            let mut allowed = reqs
                .iter()
                .filter(|r| (r.1..r.1 + r.2).contains(&at))
                .map(|r| if r.0 { 0 } else { r.3 })
                .peekable();
            let ok = if allowed.peek().is_none() { b == 0 } else { allowed.any(|v| v == b) };
            prop_assert!(ok, "byte {} is {} (requests {:?})", at, b, reqs);
        }
        prop_assert_eq!(dev.locks.len(), 0);
    }
}
