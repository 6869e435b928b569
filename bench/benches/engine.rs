//! The bench engine itself against an in-memory disk: what `sanshim bench` costs per
//! operation, at queue depth 1 and 32, so that its own overhead is known next to the figures
//! it reports for a real target.
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sanshim_bench::{BenchOptions, Bound, ReadWrite, run};
use sanshim_blockdev::MemDisk;

fn engine(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no tokio runtime: {e}"),
    };
    let disk = match MemDisk::new(512, 128 * 1024) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("no MemDisk: {e}"),
    };
    let mut group = c.benchmark_group("engine_memdisk_4k");
    group.throughput(Throughput::Elements(1));
    for (rw, qd) in [
        (ReadWrite::RandRead, 1),
        (ReadWrite::RandRead, 32),
        (ReadWrite::Write, 1),
        (ReadWrite::Write, 32),
    ] {
        group.bench_function(format!("{rw}_qd{qd}"), |b| {
            b.iter_custom(|iters| {
                let mut options =
                    BenchOptions::new(rw, 4096, qd, Bound::Bytes(iters.max(1) * 4096));
                options.seed = Some(1);
                options.progress_interval = Duration::from_secs(3600);
                match runtime.block_on(run(disk.clone(), &options, |_| {})) {
                    Ok(report) => report.measured.elapsed,
                    Err(e) => panic!("bench run failed: {e}"),
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
