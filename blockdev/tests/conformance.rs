//! Runs the conformance suite against every implementation in this crate, in the shapes the
//! other layers use (block sizes, limits, capabilities, read-only, sparse, decorated).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::conformance::{self, run_all};
use sanshim_blockdev::{ErrorKind, Fault, FaultDisk, Limits, MemDisk, Op, PathState, Trigger};

fn shapes() -> Vec<(&'static str, MemDisk)> {
    let limits = Limits {
        max_transfer_blocks: Some(3),
        optimal_granularity_blocks: 2,
        max_discard_blocks: Some(2),
        max_write_zeroes_blocks: Some(4),
    };
    vec![
        ("dense 512", MemDisk::new(512, 1024).unwrap()),
        ("dense 4096", MemDisk::new(4096, 300).unwrap()),
        ("tiny", MemDisk::new(512, 3).unwrap()),
        ("single block", MemDisk::new(512, 1).unwrap()),
        (
            "sparse 1 TiB",
            MemDisk::builder(512, 1 << 31).sparse(true).build().unwrap(),
        ),
        (
            "limited",
            MemDisk::builder(512, 256).limits(limits).build().unwrap(),
        ),
        (
            "no discard, no flush, no fua",
            MemDisk::builder(4096, 64)
                .can_discard(false)
                .can_flush(false)
                .can_fua(false)
                .build()
                .unwrap(),
        ),
        (
            "read-only",
            MemDisk::builder(512, 128).read_only(true).build().unwrap(),
        ),
        (
            "read-only sparse",
            MemDisk::builder(4096, 128)
                .read_only(true)
                .sparse(true)
                .build()
                .unwrap(),
        ),
    ]
}

#[tokio::test]
async fn test_mem_disk_conforms() {
    for (name, disk) in shapes() {
        run_all(&disk)
            .await
            .unwrap_or_else(|f| panic!("{name}: {f}"));
    }
}

#[tokio::test]
async fn test_fault_disk_without_faults_conforms() {
    for (name, disk) in shapes() {
        let dev = FaultDisk::new(disk);
        run_all(&dev)
            .await
            .unwrap_or_else(|f| panic!("{name}: {f}"));
    }
}

#[tokio::test(start_paused = true)]
async fn test_delayed_fault_disk_conforms_with_interleaving() {
    // Delays that differ per op index make the concurrent writers finish out of order.
    let dev = FaultDisk::new(MemDisk::new(512, 512).unwrap());
    dev.inject(
        Fault::delay(Duration::from_millis(7))
            .on(Op::Write)
            .when(Trigger::Range(0..1000)),
    );
    dev.inject(
        Fault::delay(Duration::from_millis(3))
            .on(Op::Write)
            .when(Trigger::Nth(1)),
    );
    run_all(&dev).await.unwrap();
}

#[tokio::test]
async fn test_arc_and_box_devices_conform() {
    let dev = Arc::new(MemDisk::new(512, 64).unwrap());
    let decorated = FaultDisk::new(Arc::clone(&dev));
    run_all(&decorated).await.unwrap();
    run_all(&dev).await.unwrap();
    run_all(&Box::new(MemDisk::new(4096, 16).unwrap()))
        .await
        .unwrap();
}

/// The suite must catch a broken device: a dead path fails the probe check, a device whose
/// writes fail fails the data checks.
#[tokio::test]
async fn test_suite_detects_broken_devices() {
    let dev = FaultDisk::new(MemDisk::new(512, 64).unwrap());
    dev.set_path_state(PathState::Dead);
    assert_eq!(run_all(&dev).await.unwrap_err().check, "out-of-range");
    dev.set_path_state(PathState::Alive);
    let id = dev.inject(
        Fault::fail(ErrorKind::Medium)
            .on(Op::Write)
            .when(Trigger::Nth(0)),
    );
    assert_eq!(
        conformance::check_write_read_back(&dev)
            .await
            .unwrap_err()
            .check,
        "write-read-back"
    );
    dev.remove(id);
    dev.inject(Fault::fail(ErrorKind::Medium).on(Op::Probe));
    assert_eq!(
        conformance::check_probe(&dev).await.unwrap_err().check,
        "probe"
    );
}
