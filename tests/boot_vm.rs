//! `sanshim boot` end to end in QEMU VMs (TCG, Debian's kernel, a busybox initramfs holding
//! the static sanshim and the NIC and nbd modules; the guest's NICs start unconfigured):
//!
//! - **iPXE**: real firmware `sanhook`s a host tgtd holding a known pseudo-random image and
//!   leaves its table in low memory; `sanshim boot` in the guest finds it (`--ibft auto`),
//!   brings eth0 up, logs in and attaches /dev/nbd0, whose sha256 must be the image's.
//! - **Two NICs, two paths, a cable pulled**: a two-NIC, two-target table (as firmware on a
//!   dual-port NIC writes it) handed to the kernel with `-acpitable`; both paths carry I/O;
//!   while the guest writes a pattern through /dev/nbd0 in a loop, the QEMU monitor's
//!   `set_link` cuts NIC 0 for 3 s and restores it: no write fails, the read-back verifies,
//!   no I/O error reaches the kernel, and path 1 shows the failover and comes back.
//! - **CHAP and mutual CHAP** from the table against a tgtd with those accounts.
//! - **The process that serves the root disk survives**: writes through /dev/nbd0 complete
//!   while a hog fills the guest's memory until the OOM killer acts (sanshim is spared:
//!   `oom_score_adj` -1000, memory locked); then `kill -9` in the middle of a write loop and
//!   the same `sanshim boot` command again: it reattaches /dev/nbd0 (the record of the LU it
//!   served says it may), and the loop finishes with no failed write and a verified read-back.
//!
//! Each scenario is one boot; the log of the guest's sanshim is printed as `@@err` records.
#![allow(clippy::unwrap_used)]

mod common;
mod vm;

#[path = "ibft_vm/ipxe.rs"]
#[allow(dead_code)]
mod ipxe;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::data::sha256_hex;
use common::tgtd::{Tgtd, free_port};
use sanshim_ibft::writer::{self, Layout};
use sanshim_ibft::{
    ChapType, Header, Ibft, Initiator, Lun, MacAddr, Nic, Origin, PciBdf, Secret, Target, flags,
};
use serde_json::Value;
use vm::{Initramfs, Kit, Net, Vm, VmRun};

const IQN: &str = "iqn.2026-12.test.sanshim:bootvm";
const INITIATOR: &str = "iqn.2026-12.test.sanshim:guest";
const CHAP: (&str, &str) = ("bootuser", "boot-secret-123");
const MUTUAL: (&str, &str) = ("tgtuser", "target-secret-456");

/// Starts `sanshim boot` in the background, waits for /dev/nbd0 to be attached, and reports
/// how long that took and how the process is protected.
const START: &str = r#"
echo 1 > /proc/sys/kernel/printk
ip link set lo up
sha() { sha256sum | cut -d' ' -f1; }
t0=$(cut -d' ' -f1 /proc/uptime)
/bin/sanshim -v boot --control /tmp/boot.ctl --listen tcp:127.0.0.1:10809 \
    >/tmp/boot.out 2>/tmp/boot.err &
pid=$!
i=0
until [ -e /sys/block/nbd0/pid ]; do
    i=$((i + 1))
    if [ $i -gt 900 ] || ! kill -0 $pid 2>/dev/null; then
        echo "@@fail boot did not attach /dev/nbd0"; sed 's/^/@@err /' /tmp/boot.err; exit 1
    fi
    sleep 0.1
done
t1=$(cut -d' ' -f1 /proc/uptime)
echo "@@ready-s $(awk "BEGIN { print $t1 - $t0 }")"
echo "@@size $(cat /sys/block/nbd0/size)"
echo "@@argv0 $(tr '\0' ' ' </proc/$pid/cmdline | cut -d' ' -f1)"
echo "@@oom $(cat /proc/$pid/oom_score_adj)"
echo "@@vmlck $(grep VmLck /proc/$pid/status | tr -s ' ' | cut -d' ' -f2)"
for dev in /sys/class/net/eth*; do
    echo "@@net $(basename $dev) $(ip -o -4 addr show dev $(basename $dev) | tr -s ' ' | cut -d' ' -f4)"
done
"#;

/// Stops `sanshim boot` and reports its exit status and log.
const STOP: &str = r#"
kill -TERM $pid; wait $pid; echo "@@exit rc=$?"
# A restarted boot logs elsewhere: its last lines, for a failure's console tail.
[ -e /tmp/boot2.err ] && tail -n 12 /tmp/boot2.err | sed 's/^/@@stop2 /'
[ -e /sys/block/nbd0/pid ] && p=yes || p=no
echo "@@after pid=$p"
echo "@@ioerr $(dmesg | grep -c -e 'I/O error' -e 'blk_update_request')"
sed 's/^/@@err /' /tmp/boot.err
"#;

fn payload(body: &str) -> String {
    format!("{START}{body}{STOP}")
}

/// The guest image: busybox, the static sanshim, and the modules.
fn initramfs(kit: &Kit, dir: &Path, name: &str, body: &str, nic: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.cpio"));
    let mut image = Initramfs::new(&payload(body))
        .module("nbd")
        .net(Net::None)
        .no_share()
        .with_sanshim();
    for m in nic.split(',') {
        image = image.module(m);
    }
    image.build(kit, &path);
    path
}

fn single<'r>(run: &'r VmRun, tag: &str) -> &'r str {
    let found = run.records(tag);
    assert_eq!(
        found.len(),
        1,
        "{tag}: {found:?}; console tail:\n{}",
        run.console_tail(80)
    );
    found[0]
}

/// What every scenario checks once the guest is done.
fn common_checks(run: &VmRun, image_bytes: usize) {
    run.expect_success();
    let ready: f64 = single(run, "@@ready-s").parse().unwrap();
    eprintln!("start to /dev/nbd0 ready: {ready:.2} s (TCG)");
    assert_eq!(single(run, "@@size"), (image_bytes / 512).to_string());
    assert_eq!(
        single(run, "@@argv0"),
        "@sanshim",
        "systemd's root storage daemon mark"
    );
    assert_eq!(single(run, "@@oom"), "-1000");
    let locked: u64 = single(run, "@@vmlck").parse().unwrap_or(0);
    assert!(
        locked > 16 << 10,
        "VmLck {locked} kB: memory locked and preallocated"
    );
    assert_eq!(single(run, "@@exit"), "rc=0", "{}", run.console_tail(80));
    assert_eq!(single(run, "@@after"), "pid=no", "detached on SIGTERM");
    assert_eq!(single(run, "@@ioerr"), "0", "{}", run.console_tail(80));
    let log = run.records("@@err").join("\n");
    for step in [
        "boot table read",
        "NIC configured",
        "network set up",
        "logged in",
        "boot LU ready to serve",
    ] {
        assert!(log.contains(step), "the log shows {step:?}:\n{log}");
    }
}

#[test]
fn ipxe_sanhook_then_boot_reads_the_image() {
    let kit = vm_kit_or_skip!();
    let _tgtd = require_tool_or_skip!("tgtd");
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
echo "@@sha $(sha </dev/nbd0)"
"#;
    let initrd = initramfs(kit, dir.path(), "ipxe", body, "virtio_pci,virtio_net");
    let scenario = ipxe::Scenario {
        initiator: INITIATOR,
        static_ip: None,
        second_path: false,
        auth: ipxe::Auth::None,
    };
    let boot = ipxe::boot(kit, &initrd, &scenario, dir.path());
    eprintln!("iPXE boot took {:?}", boot.run.elapsed);
    let run = &boot.run;
    common_checks(run, ipxe::IMAGE_BYTES);
    assert_eq!(
        single(run, "@@sha"),
        sha256_hex(&ipxe::image()),
        "the guest read the image"
    );
    assert_eq!(single(run, "@@net eth0"), "10.0.2.15/24");
    let log = run.records("@@err").join("\n");
    assert!(
        log.contains("mem"),
        "the table came from low memory:\n{log}"
    );
}

/// A table for the host tgtd as QEMU's user networks show it: NIC i at 10.0.(2+i).15/24 with
/// the MAC the test gives its e1000, target i at 10.0.(2+i).2:`ports[i]` (the host).
fn table(ports: &[u16], chap: &[ChapType]) -> Ibft {
    let ip = |s: String| Some(s.parse::<IpAddr>().unwrap());
    let nics = ports
        .iter()
        .enumerate()
        .map(|(i, _)| Nic {
            index: i as u8,
            flags: flags::IN_USE | if i == 0 { flags::BOOT_SELECTED } else { 0 },
            ip: ip(format!("10.0.{}.15", 2 + i)),
            prefix: 24,
            origin: Origin(1),
            gateway: if i == 0 { ip("10.0.2.2".into()) } else { None },
            primary_dns: None,
            secondary_dns: None,
            dhcp: None,
            vlan: 0,
            mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + i as u8]),
            pci_bdf: Some(PciBdf::new(0, 3 + i as u8, 0)),
            hostname: None,
        })
        .collect();
    let targets = ports
        .iter()
        .zip(chap)
        .enumerate()
        .map(|(i, (port, chap))| {
            let mut t = Target {
                index: i as u8,
                flags: flags::IN_USE | if i == 0 { flags::BOOT_SELECTED } else { 0 },
                ip: ip(format!("10.0.{}.2", 2 + i)),
                port: *port,
                lun: Lun::from_number(1),
                chap_type: *chap,
                nic: i as u8,
                name: Some(IQN.into()),
                chap_user: None,
                chap_secret: None,
                reverse_chap_user: None,
                reverse_chap_secret: None,
            };
            if *chap != ChapType::NONE {
                t.chap_user = Some(CHAP.0.into());
                t.chap_secret = Some(Secret::new(CHAP.1.into()));
            }
            if *chap == ChapType::MUTUAL {
                t.reverse_chap_user = Some(MUTUAL.0.into());
                t.reverse_chap_secret = Some(Secret::new(MUTUAL.1.into()));
            }
            t
        })
        .collect();
    Ibft {
        header: Header {
            signature: *b"iBFT",
            revision: Some(1),
            length: None,
            checksum_ok: None,
            oem_id: "SANSHM".into(),
            oem_table_id: "BOOTVM".into(),
        },
        control_flags: 0,
        initiator: Some(Initiator {
            index: 0,
            flags: flags::IN_USE,
            isns: None,
            slp: None,
            primary_radius: None,
            secondary_radius: None,
            name: Some(INITIATOR.into()),
        }),
        nics,
        targets,
    }
}

/// tgtd with one target of `bytes` (filled with [`ipxe::image`]'s bytes) on two ports.
fn tgtd_two_ports(bytes: usize, chap: bool) -> Option<(Tgtd, [u16; 2], Vec<u8>)> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    let backing = t.add_file_lun(1, 1, bytes as u64);
    let image: Vec<u8> = ipxe::image().into_iter().cycle().take(bytes).collect();
    std::fs::write(&backing, &image).unwrap();
    let second = free_port();
    t.add_portal(&format!("127.0.0.1:{second}"));
    if chap {
        t.add_chap(1, CHAP.0, CHAP.1, false);
        t.add_chap(1, MUTUAL.0, MUTUAL.1, true);
    }
    let ports = [t.port(), second];
    Some((t, ports, image))
}

/// QEMU arguments for `n` e1000 NICs on their own user networks, MACs as in [`table`].
fn nics(n: usize) -> Vec<String> {
    let mut args = Vec::new();
    for i in 0..n {
        args.push("-netdev".into());
        args.push(format!("user,id=n{i},net=10.0.{}.0/24", 2 + i));
        args.push("-device".into());
        args.push(format!(
            "e1000,netdev=n{i},mac=52:54:00:12:34:{:02x}",
            0x56 + i
        ));
    }
    args
}

#[test]
fn two_nics_one_cable_pulled_while_writing() {
    let kit = vm_kit_or_skip!();
    let bytes = 32 << 20;
    let Some((_tgtd, ports, _)) = tgtd_two_ports(bytes, false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.ibft");
    let ibft = table(&ports, &[ChapType::NONE, ChapType::NONE]);
    std::fs::write(&file, writer::emit(&ibft, &Layout::default()).unwrap()).unwrap();
    // Writes a 16 MiB pattern over and over for 12 s (the host pulls the cable meanwhile),
    // counting failed writes, then reads it back.
    let body = r#"
dd if=/dev/urandom of=/tmp/pat bs=1M count=16 2>/dev/null
echo "@@pat $(sha </tmp/pat)"
/bin/sanshim status --json /tmp/boot.ctl | tr -d '\n' | sed 's/^/@@status-before /'; echo
echo "@@writing"
end=$(( $(cut -d. -f1 /proc/uptime) + 12 )); fails=0; passes=0
while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
    i=0
    while [ $i -lt 16 ]; do
        dd if=/tmp/pat of=/dev/nbd0 bs=1M count=1 skip=$i seek=$i oflag=direct conv=notrunc 2>/dev/null \
            || fails=$((fails + 1))
        i=$((i + 1))
    done
    passes=$((passes + 1))
done
echo "@@write-fails $fails"
echo "@@passes $passes"
echo "@@back $(dd if=/dev/nbd0 bs=1M count=16 iflag=direct 2>/dev/null | sha)"
sleep 3
/bin/sanshim status --json /tmp/boot.ctl | tr -d '\n' | sed 's/^/@@status /'; echo
"#;
    let initrd = initramfs(kit, dir.path(), "two", body, "e1000");
    let monitor = dir.path().join("monitor.sock");
    let console = dir.path().join("console.log");
    let vm = Vm::kernel(&initrd)
        .arg("-acpitable")
        .arg(format!("file={}", file.display()))
        .args(nics(2))
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor.display()))
        .log(&console)
        .timeout(Duration::from_secs(180));
    let puller = {
        let (console, monitor) = (console.clone(), monitor.clone());
        std::thread::spawn(move || pull_cable(&console, &monitor))
    };
    let run = vm.run(kit);
    let pulled = puller.join().unwrap();
    common_checks(&run, bytes);
    assert!(
        pulled,
        "the cable was pulled during the writes; console:\n{}",
        run.console_tail(80)
    );
    assert_eq!(
        single(&run, "@@write-fails"),
        "0",
        "{}",
        run.console_tail(80)
    );
    assert_eq!(single(&run, "@@back"), single(&run, "@@pat"), "read-back");
    eprintln!("write passes during the run: {}", single(&run, "@@passes"));
    let before: Value = serde_json::from_str(single(&run, "@@status-before")).unwrap();
    let after: Value = serde_json::from_str(single(&run, "@@status")).unwrap();
    let paths = after["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{after}");
    assert_eq!(before["paths"].as_array().unwrap().len(), 2, "{before}");
    let total: u64 = paths.iter().map(|p| p["ops"].as_u64().unwrap()).sum();
    eprintln!(
        "ops per path: {:?}",
        paths.iter().map(|p| &p["ops"]).collect::<Vec<_>>()
    );
    for p in paths {
        assert!(
            p["ops"].as_u64().unwrap() * 5 >= total,
            "both paths carried a share of the I/O (one write at a time): {after}"
        );
        assert_eq!(
            p["state"], "active",
            "both paths in service at the end: {after}"
        );
    }
    let path1 = &paths[0];
    assert!(
        path1["state_changes"].as_u64().unwrap() >= 2,
        "path 1 went out of service and came back: {path1}"
    );
    assert_eq!(single(&run, "@@net eth0"), "10.0.2.15/24");
    assert_eq!(single(&run, "@@net eth1"), "10.0.3.15/24");
}

/// Waits for the guest's `@@writing`, then cuts NIC 0 for 3 s through the QEMU monitor.
fn pull_cable(console: &Path, monitor: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(170);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains("@@writing") {
            std::thread::sleep(Duration::from_secs(2));
            let Ok(mut m) = std::os::unix::net::UnixStream::connect(monitor) else {
                return false;
            };
            let _ = m.write_all(b"set_link n0 off\n");
            eprintln!("cable of NIC 0 pulled");
            std::thread::sleep(Duration::from_secs(3));
            let _ = m.write_all(b"set_link n0 on\n");
            eprintln!("cable of NIC 0 back");
            std::thread::sleep(Duration::from_millis(200));
            return true;
        }
        if text.contains("SANSHIM-VM-END") {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn chap_and_mutual_chap_from_the_table() {
    let kit = vm_kit_or_skip!();
    let bytes = 8 << 20;
    let Some((_tgtd, ports, image)) = tgtd_two_ports(bytes, true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chap.ibft");
    let ibft = table(&ports, &[ChapType::ONE_WAY, ChapType::MUTUAL]);
    std::fs::write(&file, writer::emit(&ibft, &Layout::default()).unwrap()).unwrap();
    let body = r#"
echo "@@sha $(sha </dev/nbd0)"
/bin/sanshim status --json /tmp/boot.ctl | tr -d '\n' | sed 's/^/@@status /'; echo
"#;
    let initrd = initramfs(kit, dir.path(), "chap", body, "e1000");
    // Mutual CHAP needs a seeded kernel RNG for its challenge: a CPU with RDRAND, as servers
    // have (QEMU's default CPU model has none, and the guest would wait minutes for entropy).
    let run = Vm::kernel(&initrd)
        .args(["-cpu", "max"])
        .arg("-acpitable")
        .arg(format!("file={}", file.display()))
        .args(nics(2))
        .timeout(Duration::from_secs(120))
        .run(kit);
    common_checks(&run, bytes);
    assert_eq!(single(&run, "@@sha"), sha256_hex(&image));
    let status: Value = serde_json::from_str(single(&run, "@@status")).unwrap();
    assert_eq!(status["paths"].as_array().unwrap().len(), 2, "{status}");
    let log = run.records("@@err").join("\n");
    for secret in [CHAP.1, MUTUAL.1] {
        assert!(!log.contains(secret), "a CHAP secret reached the log");
    }
}

#[test]
fn survives_memory_pressure_and_kill_9() {
    let kit = vm_kit_or_skip!();
    let bytes = 64 << 20;
    let Some((_tgtd, ports, _)) = tgtd_two_ports(bytes, false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ibft");
    let ibft = table(&ports[..1], &[ChapType::NONE]);
    std::fs::write(&file, writer::emit(&ibft, &Layout::default()).unwrap()).unwrap();
    let body = r#"
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
echo "@@pat $(sha </tmp/pat)"
# A hog that doubles a string until the OOM killer stops it (or malloc fails first).
awk 'BEGIN { s = "x"; while (length(s) < 1000000000) s = s s }' >/dev/null 2>&1 &
hog=$!
sleep 2
fails=0; i=0
while [ $i -lt 8 ]; do
    dd if=/tmp/pat of=/dev/nbd0 bs=1M count=1 skip=$i seek=$i oflag=direct conv=notrunc 2>/dev/null \
        || fails=$((fails + 1))
    i=$((i + 1))
done
wait $hog
echo "@@oom-kills $(dmesg | grep -c -i -e 'out of memory' -e 'oom-kill')"
echo "@@hog-fails $fails"
kill -0 $pid 2>/dev/null && echo "@@alive-after-hog yes"
echo "@@hog-back $(dd if=/dev/nbd0 bs=1M count=8 iflag=direct 2>/dev/null | sha)"

# kill -9 in the middle of a write loop; the same command again reattaches. The loop writes
# slot i % 32 of a 32 MiB region with chunk i % 8 of the pattern until told to stop (after
# at least 32 writes), counting failed writes.
( f=0; i=0
  while [ $i -lt 32 ] || [ ! -e /tmp/stop ]; do
      dd if=/tmp/pat of=/dev/nbd0 bs=1M count=1 skip=$((i % 8)) seek=$((8 + i % 32)) \
          oflag=direct conv=notrunc 2>/dev/null || f=$((f + 1))
      i=$((i + 1))
  done
  echo "@@loop-writes $i"
  echo "@@loop-fails $f" ) &
writer=$!
sleep 1
kill -9 $pid
k0=$(cut -d' ' -f1 /proc/uptime)
echo "@@killed"
/bin/sanshim -v boot --control /tmp/boot.ctl --listen tcp:127.0.0.1:10809 \
    >/tmp/boot2.out 2>/tmp/boot2.err &
pid=$!
i=0
until grep -q 'kernel device attached' /tmp/boot2.err; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
        echo "@@fail the second boot did not attach"; sed 's/^/@@err2 /' /tmp/boot2.err; exit 1
    fi
    sleep 0.1
done
k1=$(cut -d' ' -f1 /proc/uptime)
echo "@@reattach-s $(awk "BEGIN { print $k1 - $k0 }")"
sleep 2
touch /tmp/stop
wait $writer
k2=$(cut -d' ' -f1 /proc/uptime)
echo "@@loop-done-s $(awk "BEGIN { print $k2 - $k0 }")"
expect=$( (i=0; while [ $i -lt 4 ]; do cat /tmp/pat; i=$((i + 1)); done) | sha)
echo "@@loop-expect $expect"
echo "@@loop-back $(dd if=/dev/nbd0 bs=1M skip=8 count=32 iflag=direct 2>/dev/null | sha)"
sed 's/^/@@err2 /' /tmp/boot2.err
"#;
    let initrd = initramfs(kit, dir.path(), "survive", body, "e1000");
    let run = Vm::kernel(&initrd)
        .arg("-acpitable")
        .arg(format!("file={}", file.display()))
        .args(nics(1))
        .timeout(Duration::from_secs(240))
        .run(kit);
    common_checks(&run, bytes);
    let pat = single(&run, "@@pat");
    assert_ne!(
        single(&run, "@@oom-kills"),
        "0",
        "the hog met the OOM killer"
    );
    assert_eq!(single(&run, "@@hog-fails"), "0");
    assert_eq!(single(&run, "@@alive-after-hog"), "yes");
    assert_eq!(single(&run, "@@hog-back"), pat);
    assert_eq!(
        single(&run, "@@loop-fails"),
        "0",
        "{}",
        run.console_tail(80)
    );
    assert_eq!(single(&run, "@@loop-back"), single(&run, "@@loop-expect"));
    eprintln!(
        "kill -9: reattached after {} s, write loop ({} writes) done {} s after the kill",
        single(&run, "@@reattach-s"),
        single(&run, "@@loop-writes"),
        single(&run, "@@loop-done-s")
    );
    let log2 = run.records("@@err2").join("\n");
    assert!(
        log2.contains("reattached=true"),
        "the second boot reattached:\n{log2}"
    );
}
