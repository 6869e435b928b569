//! Kernel attach in a QEMU VM (TCG) running Debian's kernel with its `nbd.ko`:
//!
//! - `kernel_attach_memdisk`: the test tool `nbd/examples/memexport.rs` serves an in-memory
//!   disk and attaches `/dev/nbd0` with `sanshim_nbd::kernel::attach` over netlink (two
//!   connections) and `/dev/nbd2` with the ioctls (4 KiB blocks); `dd` writes a pattern, reads
//!   it back with O_DIRECT, a second attach of the busy device is refused, Debian's
//!   `nbd-client` attaches `/dev/nbd1` to the same server's TCP listener and reads the pattern,
//!   and on SIGTERM the tool detaches and prints the disk's digest, compared with the expected
//!   image. Then `kill -9` of the tool: a netlink device with two connections stays configured
//!   and a `--reattach` replaces both; an ioctl device goes down with it.
//! - `sanshim_export_attach_against_host_tgtd`: the static `sanshim export --attach /dev/nbd0`
//!   in the guest against a tgtd on the host (10.0.2.2 through QEMU user networking); `dd`
//!   writes a pattern, `nbd-client` reads it back through `/dev/nbd1`, SIGTERM ends the export
//!   with status 0, and the host's backing file holds the pattern.
//! - `sanshim_export_reattach_after_kill`: the same export, under a loop writing a known pattern
//!   block by block with O_DIRECT; `kill -9` of sanshim twice (between two writes, then with a
//!   write in flight), each followed by `sanshim export --attach /dev/nbd0 --reattach`: the
//!   loop finishes without an I/O error (dd's status, and the kernel log), the read-back and
//!   the host's backing file match the pattern, and the pauses are printed. A reattach of the
//!   live device by an export of a LUN of another size is refused.
//!
//! Debian's `nbd-client` is dynamically linked: it travels with the libraries `ldd` names.
//! Runtime: two boots of ~10-15 s each, and one of ~45 s (the reattach: 30 s of it is the
//! kernel's timer on the write that was in flight at the second kill).
#![allow(clippy::unwrap_used)]

mod common;

use common::data::sha256_hex;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use vm::{Initramfs, Net, Vm, VmRun};

/// Size of the pattern the guests write, in MiB.
const PATTERN_MIB: usize = 4;

#[test]
fn kernel_attach_memdisk() {
    let kit = vm_kit_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("attach.cpio");
    let client = nbd_client_files();
    let mut image = Initramfs::new(ATTACH_PAYLOAD)
        .module("nbd")
        .no_share()
        .file(static_memexport(), "/bin/memexport");
    for (src, dest) in &client {
        image = image.file(src, dest);
    }
    image.build(kit, &initrd);
    let run = Vm::kernel(&initrd)
        .timeout(Duration::from_secs(90))
        .run(kit);
    eprintln!("attach boot took {:?}", run.elapsed);
    run.expect_success();
    let one = |tag: &str| single(&run, tag);
    let pattern = one("@@pat");

    // Netlink, two connections, 512-byte blocks, 16 MiB.
    assert_eq!(one("@@nl-attached"), "/dev/nbd0 Netlink");
    assert_eq!(one("@@nl-size"), "32768");
    assert_eq!(one("@@nl-back"), pattern, "read back through /dev/nbd0");
    let busy = one("@@busy");
    assert!(
        busy.starts_with("rc=1 ") && busy.contains("in use"),
        "second attach of /dev/nbd0: {busy}"
    );
    if client.is_empty() {
        eprintln!("SKIPPED part: nbd-client is not installed");
    } else {
        assert_eq!(one("@@nbd-client"), "rc=0");
        assert_eq!(
            one("@@nc-back"),
            pattern,
            "read through nbd-client's /dev/nbd1"
        );
        assert_eq!(one("@@nbd-client-d"), "rc=0");
    }
    assert_eq!(one("@@nl-exit"), "rc=0");
    assert_eq!(one("@@nl-detached"), "yes");
    assert_eq!(one("@@nl-sha"), one("@@nl-expect"), "the whole disk");
    assert_eq!(one("@@nl-after"), "size=0 pid=no");

    // Ioctls, 4 KiB blocks, 16 MiB.
    assert_eq!(one("@@io-attached"), "/dev/nbd2 Ioctl");
    assert_eq!(one("@@io-bs"), "4096");
    assert_eq!(one("@@io-back"), pattern, "read back through /dev/nbd2");
    assert_eq!(one("@@io-exit"), "rc=0");
    assert_eq!(one("@@io-sha"), one("@@io-expect"), "the whole disk");
    assert_eq!(one("@@io-after"), "size=0 pid=no");

    // Reattach after kill -9.
    assert_eq!(one("@@nlk-after"), "pid=yes");
    assert_eq!(one("@@nlre-attached"), "/dev/nbd3 Netlink");
    assert_eq!(
        one("@@nlre"),
        "2 reattached true",
        "both dead connections replaced"
    );
    assert_eq!(one("@@nlre-exit"), "rc=0");
    assert_eq!(one("@@nlre-after"), "size=0 pid=no");
    assert_eq!(
        one("@@iok-after"),
        "pid=no",
        "an ioctl device dies with its server"
    );
    assert_eq!(one("@@iore"), "1 reattached false");
    assert_eq!(one("@@iore-after"), "size=0 pid=no");
}

#[test]
fn sanshim_export_attach_against_host_tgtd() {
    let kit = vm_kit_or_skip!();
    let mut tgtd = match common::tgtd::Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    let iqn = "iqn.2026-11.test.sanshim:nbdvm";
    tgtd.add_target(1, iqn);
    let backing = tgtd.add_file_lun(1, 1, 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("export.cpio");
    let client = nbd_client_files();
    let mut image = Initramfs::new(EXPORT_PAYLOAD)
        .module("nbd")
        .module("virtio_net")
        .module("virtio_pci")
        .net(Net::Static)
        .no_share()
        .with_sanshim();
    for (src, dest) in &client {
        image = image.file(src, dest);
    }
    image.build(kit, &initrd);
    let url = format!("iscsi://10.0.2.2:{}/{iqn}/1", tgtd.port());
    let run = Vm::kernel(&initrd)
        .append(&format!("-- {url}"))
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .timeout(Duration::from_secs(90))
        .run(kit);
    eprintln!("export boot took {:?}", run.elapsed);
    run.expect_success();
    let one = |tag: &str| single(&run, tag);
    let pattern = one("@@pat");
    assert_eq!(one("@@uri"), "nbd://127.0.0.1:10809/nbdvm-lun1");
    assert_eq!(one("@@size"), "131072");
    assert_eq!(one("@@back"), pattern, "read back through /dev/nbd0");
    if !client.is_empty() {
        assert_eq!(one("@@nbd-client"), "rc=0");
        assert_eq!(one("@@nc-back"), pattern, "read through nbd-client");
        assert_eq!(one("@@nbd-client-d"), "rc=0");
    }
    assert_eq!(one("@@exit"), "rc=0");
    assert_eq!(one("@@after"), "size=0 pid=no");
    // The pattern went to the target: offset 1 MiB of the backing file.
    let data = std::fs::read(&backing).unwrap();
    let mib = 1 << 20;
    let written = &data[mib..mib + PATTERN_MIB * mib];
    assert_eq!(sha256_hex(written), pattern, "host backing file");
}

#[test]
fn sanshim_export_reattach_after_kill() {
    let kit = vm_kit_or_skip!();
    let mut tgtd = match common::tgtd::Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    let iqn = "iqn.2026-11.test.sanshim:reattach";
    tgtd.add_target(1, iqn);
    let backing = tgtd.add_file_lun(1, 1, 64 << 20);
    tgtd.add_file_lun(1, 2, 32 << 20);
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("reattach.cpio");
    Initramfs::new(REATTACH_PAYLOAD)
        .module("nbd")
        .module("virtio_net")
        .module("virtio_pci")
        .net(Net::Static)
        .no_share()
        .with_sanshim()
        .build(kit, &initrd);
    let url = |lun: u32| format!("iscsi://10.0.2.2:{}/{iqn}/{lun}", tgtd.port());
    let run = Vm::kernel(&initrd)
        .append(&format!("-- {} {}", url(1), url(2)))
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .timeout(Duration::from_secs(150))
        .run(kit);
    eprintln!("reattach boot took {:?}", run.elapsed);
    run.expect_success();
    let one = |tag: &str| single(&run, tag);
    for line in run.records("@@dmesg") {
        eprintln!("guest kernel: {line}");
    }
    assert_eq!(run.records("@@ioerr"), Vec::<&str>::new(), "a write failed");
    let pattern = one("@@pat");
    assert_eq!(one("@@size"), "131072");
    let third = REATTACH_BLOCKS / 3;
    assert_eq!(one("@@killed-1"), third.to_string(), "the writer parked");
    assert_eq!(
        one("@@after-kill"),
        "pid=yes size=131072",
        "the device stays configured"
    );
    assert_eq!(
        one("@@reattached-1"),
        "1",
        "the second sanshim logs a reattach"
    );
    let killed: usize = one("@@killed-2").parse().unwrap();
    assert!(
        (2 * third..REATTACH_BLOCKS).contains(&killed),
        "killed after {killed}"
    );
    assert_eq!(
        one("@@inflight-2"),
        "1",
        "a write in flight at the second kill"
    );
    assert_eq!(
        one("@@reattached-2"),
        "1",
        "the third sanshim logs a reattach"
    );
    assert_eq!(one("@@writes"), REATTACH_BLOCKS.to_string());
    assert_eq!(one("@@back"), pattern, "read back through /dev/nbd0");
    let secs = |s: &str| s.parse::<f64>().unwrap();
    let resumed: Vec<f64> = run
        .records("@@resumed-after")
        .into_iter()
        .map(secs)
        .collect();
    let pause = secs(&one("@@pause"));
    eprintln!(
        "reattach: first write done {:.2} s after the kill between requests (1 s of it before \
         the restart), {:.2} s after the kill with a write in flight; longest pause {pause:.2} s",
        resumed[0], resumed[1]
    );
    assert!(resumed[0] < 30.0, "held request: {} s", resumed[0]);
    // The lost write waits for its 30 s timer, counted from when it was sent.
    assert!(
        (20.0..60.0).contains(&resumed[1]),
        "lost write: {} s",
        resumed[1]
    );
    let errors: Vec<&str> = run
        .records("@@dmesg")
        .into_iter()
        .filter(|l| {
            ["I/O error", "shutting down sockets", "timed out"]
                .iter()
                .any(|e| l.contains(e))
        })
        .collect();
    assert!(errors.is_empty(), "kernel errors: {errors:?}");
    let mismatch = one("@@mismatch");
    assert!(
        mismatch.starts_with("rc=1 ") && mismatch.contains("refusing to reattach"),
        "reattach with a 32 MiB LUN: {mismatch}"
    );
    assert_eq!(one("@@exit"), "rc=0");
    assert_eq!(one("@@after"), "size=0 pid=no");
    let data = std::fs::read(&backing).unwrap();
    let len = REATTACH_BLOCKS * REATTACH_BLOCK;
    assert_eq!(sha256_hex(&data[..len]), pattern, "host backing file");
}

/// The payload of `kernel_attach_memdisk`; `@@TAG value` lines are the results.
const ATTACH_PAYLOAD: &str = r#"
echo 1 > /proc/sys/kernel/printk
ip link set lo up
sha() { sha256sum | cut -d' ' -f1; }
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
echo "@@pat $(sha </tmp/pat)"
# start TAG ARGS...: run memexport in the background and wait until it attached.
start() {
    tag=$1; shift
    /bin/memexport "$@" >/tmp/$tag.out 2>/tmp/$tag.err &
    pid=$!
    i=0
    until grep -q '^attached' /tmp/$tag.out; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 $pid 2>/dev/null; then
            echo "@@fail $tag did not attach: $(cat /tmp/$tag.err)"; exit 1
        fi
        sleep 0.1
    done
    echo "@@$tag-attached $(sed -n 's/^attached //p' /tmp/$tag.out)"
}
# stop TAG DEV: SIGTERM memexport, report its status, digest and the device afterwards.
stop() {
    kill -TERM $pid; wait $pid; echo "@@$1-exit rc=$?"
    grep -q '^detached' /tmp/$1.out && echo "@@$1-detached yes"
    echo "@@$1-sha $(sed -n 's/^sha256 //p' /tmp/$1.out)"
    [ -e /sys/block/$2/pid ] && p=yes || p=no
    echo "@@$1-after size=$(cat /sys/block/$2/size) pid=$p"
    sed "s/^/@@$1-err /" /tmp/$1.err
}
zeros() { dd if=/dev/zero bs=1M count=$1 2>/dev/null; }

start nl --attach /dev/nbd0 --connections 2 --listen tcp:127.0.0.1:10809 --size 16777216
echo "@@nl-size $(cat /sys/block/nbd0/size)"
dd if=/tmp/pat of=/dev/nbd0 bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null || echo "@@fail dd nbd0"
echo "@@nl-back $(dd if=/dev/nbd0 bs=1M skip=1 count=4 iflag=direct 2>/dev/null | sha)"
/bin/memexport --attach /dev/nbd0 >/dev/null 2>/tmp/busy.err
echo "@@busy rc=$? $(head -c 200 /tmp/busy.err)"
if [ -x /bin/nbd-client ]; then
    /bin/nbd-client -N mem 127.0.0.1 10809 /dev/nbd1 >/tmp/nc.log 2>&1
    echo "@@nbd-client rc=$?"
    sed 's/^/@@nc-log /' /tmp/nc.log
    echo "@@nc-back $(dd if=/dev/nbd1 bs=1M skip=1 count=4 iflag=direct 2>/dev/null | sha)"
    /bin/nbd-client -d /dev/nbd1 >/dev/null 2>&1
    echo "@@nbd-client-d rc=$?"
fi
stop nl nbd0
echo "@@nl-expect $( (zeros 1; cat /tmp/pat; zeros 11) | sha)"

start io --attach /dev/nbd2 --method ioctl --block-size 4096 --size 16777216
echo "@@io-bs $(cat /sys/block/nbd2/queue/logical_block_size)"
dd if=/tmp/pat of=/dev/nbd2 bs=1M seek=2 oflag=direct conv=fsync 2>/dev/null || echo "@@fail dd nbd2"
echo "@@io-back $(dd if=/dev/nbd2 bs=1M skip=2 count=4 iflag=direct 2>/dev/null | sha)"
stop io nbd2
echo "@@io-expect $( (zeros 2; cat /tmp/pat; zeros 10) | sha)"

# After kill -9: a netlink device with two connections stays configured and takes two fresh
# ones from a reattach; an ioctl device goes down with its server, and a reattach attaches it
# afresh.
pidfile() { [ -e /sys/block/$1/pid ] && echo yes || echo no; }
start nlk --attach /dev/nbd3 --connections 2
kill -9 $pid; wait $pid 2>/dev/null
echo "@@nlk-after pid=$(pidfile nbd3)"
start nlre --attach /dev/nbd3 --reattach
echo "@@nlre $(sed -n 's/^connections //p' /tmp/nlre.out)"
stop nlre nbd3
start iok --attach /dev/nbd4 --method ioctl
kill -9 $pid; wait $pid 2>/dev/null
echo "@@iok-after pid=$(pidfile nbd4)"
start iore --attach /dev/nbd4 --reattach
echo "@@iore $(sed -n 's/^connections //p' /tmp/iore.out)"
stop iore nbd4
"#;

/// The payload of `sanshim_export_attach_against_host_tgtd`; its argument is the URL.
const EXPORT_PAYLOAD: &str = r#"
echo 1 > /proc/sys/kernel/printk
ip link set lo up
sha() { sha256sum | cut -d' ' -f1; }
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
echo "@@pat $(sha </tmp/pat)"
/bin/sanshim -v --initiator-name iqn.2026-11.test.sanshim:guest export "$1" \
    --attach /dev/nbd0 --listen tcp:127.0.0.1:10809 >/tmp/x.out 2>/tmp/x.err &
pid=$!
i=0
until [ -s /tmp/x.out ]; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
        echo "@@fail export did not start"; sed 's/^/@@err /' /tmp/x.err; exit 1
    fi
    sleep 0.1
done
echo "@@uri $(cat /tmp/x.out)"
echo "@@size $(cat /sys/block/nbd0/size)"
dd if=/tmp/pat of=/dev/nbd0 bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null || echo "@@fail dd"
echo "@@back $(dd if=/dev/nbd0 bs=1M skip=1 count=4 iflag=direct 2>/dev/null | sha)"
if [ -x /bin/nbd-client ]; then
    /bin/nbd-client -N nbdvm-lun1 127.0.0.1 10809 /dev/nbd1 >/tmp/nc.log 2>&1
    echo "@@nbd-client rc=$?"
    echo "@@nc-back $(dd if=/dev/nbd1 bs=1M skip=1 count=4 iflag=direct 2>/dev/null | sha)"
    /bin/nbd-client -d /dev/nbd1 >/dev/null 2>&1
    echo "@@nbd-client-d rc=$?"
fi
kill -TERM $pid; wait $pid; echo "@@exit rc=$?"
[ -e /sys/block/nbd0/pid ] && p=yes || p=no
echo "@@after size=$(cat /sys/block/nbd0/size) pid=$p"
sed 's/^/@@err /' /tmp/x.err
"#;

/// Blocks the reattach payload writes, and their size.
const REATTACH_BLOCKS: usize = 96;
const REATTACH_BLOCK: usize = 64 << 10;

/// The payload of `sanshim_export_reattach_after_kill`; its arguments are the URLs of a 64 MiB
/// and a 32 MiB LUN. Times are `/proc/uptime` (10 ms resolution). Two crashes:
/// 1. the writer parks after a third of the blocks, sanshim is killed, the writer's next block
///    goes to the dead device (the kernel holds it: `wait_for_reconnect`), and a second
///    sanshim reattaches a second later;
/// 2. after two thirds, sanshim is stopped (SIGSTOP) until a write is in flight on its socket
///    (`/sys/block/nbd0/inflight`), then killed: that write is lost with the socket and comes
///    back through the kernel's 30 s request timer once a third sanshim reattached.
const REATTACH_PAYLOAD: &str = r#"
echo 1 > /proc/sys/kernel/printk
ip link set lo up
sha() { sha256sum | cut -d' ' -f1; }
now() { cut -d' ' -f1 /proc/uptime; }
pidfile() { [ -e /sys/block/nbd0/pid ] && echo yes || echo no; }
BS=65536
N=96
dd if=/dev/urandom of=/tmp/pat bs=$BS count=$N 2>/dev/null
echo "@@pat $(sha </tmp/pat)"
# start TAG URL ARGS...: run the export in the background, wait until it printed its URI.
start() {
    tag=$1; url=$2; shift 2
    /bin/sanshim -v --initiator-name iqn.2026-11.test.sanshim:guest export "$url" \
        --attach /dev/nbd0 --listen tcp:127.0.0.1:10809 "$@" >/tmp/$tag.out 2>/tmp/$tag.err &
    pid=$!
    i=0
    until [ -s /tmp/$tag.out ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
            echo "@@fail $tag did not start"; sed 's/^/@@err /' /tmp/$tag.err; exit 1
        fi
        sleep 0.1
    done
}
written() { wc -l < /tmp/times; }
start first "$1"
echo "@@size $(cat /sys/block/nbd0/size)"
: > /tmp/times
(
    i=0
    while [ $i -lt $N ]; do
        if [ $i -eq $((N / 3)) ]; then
            touch /tmp/parked
            while [ ! -e /tmp/go ]; do sleep 0.02; done
        fi
        if ! dd if=/tmp/pat of=/dev/nbd0 bs=$BS skip=$i seek=$i count=1 oflag=direct \
            conv=notrunc 2>/tmp/dd.err; then
            echo "@@ioerr block $i: $(cat /tmp/dd.err)"
        fi
        echo "$i $(now)" >> /tmp/times
        i=$((i + 1))
    done
) &
writer=$!

# 1: killed between requests; a request arrives while no connection is alive.
while [ ! -e /tmp/parked ]; do sleep 0.02; done
kill -9 $pid; wait $pid 2>/dev/null
k1=$(now)
echo "@@killed-1 $(written)"
echo "@@after-kill pid=$(pidfile) size=$(cat /sys/block/nbd0/size)"
touch /tmp/go
sleep 1
start second "$1" --reattach
echo "@@reattached-1 $(grep -c 'reattached: the kernel' /tmp/second.err)"

# 2: killed with a write in flight on its socket.
until [ "$(written)" -ge $((2 * N / 3)) ]; do sleep 0.02; done
kill -STOP $pid
i=0
until [ "$(awk '{ print $1 + $2 }' /sys/block/nbd0/inflight)" -gt 0 ] || [ $i -gt 500 ]; do
    i=$((i + 1)); sleep 0.02
done
echo "@@inflight-2 $(awk '{ print $1 + $2 }' /sys/block/nbd0/inflight)"
kill -9 $pid; wait $pid 2>/dev/null
k2=$(now)
echo "@@killed-2 $(written)"
start third "$1" --reattach
echo "@@reattached-2 $(grep -c 'reattached: the kernel' /tmp/third.err)"

wait $writer
echo "@@writes $(written)"
awk 'NR > 1 { d = $2 - prev; if (d > max) max = d } { prev = $2 } END { printf "@@pause %.2f\n", max }' /tmp/times
for k in $k1 $k2; do
    awk -v k=$k '$2 > k { printf "@@resumed-after %.2f\n", $2 - k; exit }' /tmp/times
done
echo "@@back $(dd if=/dev/nbd0 bs=$BS count=$N iflag=direct 2>/dev/null | sha)"
dmesg | grep -iE 'nbd|I/O error|blk_update' | sed 's/^/@@dmesg /'
/bin/sanshim --initiator-name iqn.2026-11.test.sanshim:guest2 export "$2" --attach /dev/nbd0 \
    --reattach --listen tcp:127.0.0.1:10810 >/dev/null 2>/tmp/neg.err
echo "@@mismatch rc=$? $(grep -o 'refusing to reattach.*' /tmp/neg.err | head -c 300)"
kill -TERM $pid; wait $pid; echo "@@exit rc=$?"
echo "@@after size=$(cat /sys/block/nbd0/size) pid=$(pidfile)"
sed 's/^/@@err /' /tmp/third.err | tail -n 20
"#;

/// The one record with `tag`; panics with the console when there is not exactly one.
fn single(run: &VmRun, tag: &str) -> String {
    let found = run.records(tag);
    assert_eq!(
        found.len(),
        1,
        "{tag}: {found:?}; console tail:\n{}",
        run.console_tail(60)
    );
    found[0].to_owned()
}

/// `nbd-client` as `/bin/nbd-client` plus every library `ldd` names, at their own paths;
/// empty when it is not installed (a failure under CI).
fn nbd_client_files() -> Vec<(PathBuf, String)> {
    let Ok(bin) = common::require_tool("nbd-client") else {
        return Vec::new();
    };
    let out = Command::new("ldd").arg(&bin).output().unwrap();
    assert!(out.status.success(), "ldd {}", bin.display());
    let mut files = vec![(bin, "/bin/nbd-client".to_owned())];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push((PathBuf::from(path), path.to_owned()));
        }
    }
    files
}

/// The static, stripped `memexport` example, built once per test process into
/// `target/static` or `$SANSHIM_STATIC_TARGET_DIR` (next to the static `sanshim`, sharing its
/// dependencies).
fn static_memexport() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = vm::repo_root();
        let target = "x86_64-unknown-linux-gnu";
        let dir = std::env::var_os("SANSHIM_STATIC_TARGET_DIR")
            .map_or_else(|| root.join("target/static"), PathBuf::from);
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "--release", "-p", "sanshim-nbd", "--example"])
            .args(["memexport", "--target", target, "--target-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "building the static memexport failed");
        let bin = dir.join(target).join("release/examples/memexport");
        let stripped = bin.with_file_name("memexport-guest");
        let status = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&bin)
            .status();
        if status.is_ok_and(|s| s.success()) {
            stripped
        } else {
            bin
        }
    })
}
