//! iBFTs written by real firmware: SeaBIOS runs the legacy image of QEMU's iPXE ROM (Debian
//! `ipxe-qemu`, `efi-virtio.rom`, the default ROM of virtio-net-pci), which DHCPs on QEMU's user
//! network, fetches `boot.ipxe` from QEMU's built-in TFTP server, `sanhook`s a host tgtd
//! (10.0.2.2 is the host), which writes the table into low memory, then boots Debian's kernel
//! and our initramfs over TFTP.
//!
//! A second NIC sits on its own user network (10.0.3.0/24, host 10.0.3.2) with a static
//! address and no gateway: with a gateway, iPXE routes everything through net0 and the table
//! omits NIC 1 (shared/DESIGN.md, test-bed facts).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::common::tgtd::{Tgtd, free_port};
use crate::vm::{Kit, Vm, VmRun};

/// The target every scenario boots from.
pub const TARGET_IQN: &str = "iqn.2026-11.test.sanshim:ipxe-disk";
/// CHAP account the initiator proves.
pub const CHAP: (&str, &str) = ("alice", "alice-secret-12");
/// CHAP account the target proves (mutual CHAP).
pub const REVERSE_CHAP: (&str, &str) = ("tgtuser", "target-secret-34");

/// How iPXE authenticates.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Auth {
    /// No CHAP.
    None,
    /// One-way CHAP with [`CHAP`].
    OneWay,
    /// Mutual CHAP with [`CHAP`] and [`REVERSE_CHAP`].
    Mutual,
}

/// One firmware boot.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The initiator name iPXE is given.
    pub initiator: &'static str,
    /// A static address for net0 (`set net0/ip`) instead of the DHCP lease.
    pub static_ip: Option<&'static str>,
    /// Add net1 and a second path through it (two NICs, two targets: multipath).
    pub second_path: bool,
    /// Authentication.
    pub auth: Auth,
}

/// What a firmware boot left behind.
pub struct Boot {
    /// The VM run (console records, `lowmem.bin` in its output directory).
    pub run: VmRun,
    /// The portal ports of path 0 and path 1.
    pub ports: [u16; 2],
    /// The tgtd that served the boot (kept alive until the checks are done).
    pub tgtd: Tgtd,
}

/// Size of the LU iPXE boots from; its backing file holds [`image`].
pub const IMAGE_BYTES: usize = 8 << 20;

/// The LU's content: pseudo-random bytes (xorshift), the same every run, so the guest's
/// reads can be checked against it.
pub fn image() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(IMAGE_BYTES);
    while out.len() < IMAGE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Starts tgtd, boots the scenario and returns what the guest reported.
pub fn boot(kit: &Kit, initrd: &Path, scenario: &Scenario, dir: &Path) -> Boot {
    let mut tgtd = Tgtd::start();
    tgtd.add_target(1, TARGET_IQN);
    let backing = tgtd.add_file_lun(1, 1, IMAGE_BYTES as u64);
    std::fs::write(&backing, image()).expect("write the LU's image");
    let second = free_port();
    tgtd.add_portal(&format!("127.0.0.1:{second}"));
    if scenario.auth != Auth::None {
        tgtd.add_chap(1, CHAP.0, CHAP.1, false);
    }
    if scenario.auth == Auth::Mutual {
        tgtd.add_chap(1, REVERSE_CHAP.0, REVERSE_CHAP.1, true);
    }
    let ports = [tgtd.port(), second];

    let tftp = dir.join("tftp");
    std::fs::create_dir_all(&tftp).expect("create the TFTP directory");
    std::fs::copy(kit.vmlinuz(), tftp.join("vmlinuz")).expect("copy vmlinuz");
    std::fs::copy(initrd, tftp.join("initrd.cpio")).expect("copy the initramfs");
    std::fs::write(tftp.join("boot.ipxe"), script(scenario, ports)).expect("write boot.ipxe");

    let mut vm = Vm::firmware()
        .timeout(Duration::from_secs(240))
        .out_dir(&dir.join("out"))
        .log(&dir.join("console.log"))
        .args([
            "-machine",
            "graphics=off",
            "-boot",
            "order=n,reboot-timeout=0",
        ])
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,tftp={},bootfile=boot.ipxe",
            tftp.display()
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"]);
    if scenario.second_path {
        vm = vm.args(["-netdev", "user,id=n1,net=10.0.3.0/24"]);
        // One ROM drives every NIC; a second copy would only cost option-ROM space.
        vm = vm.args(["-device", "virtio-net-pci,netdev=n1,romfile="]);
    }
    let run = vm.run(kit);
    Boot { run, ports, tgtd }
}

/// The iPXE script for `scenario`. On any failure it prints the harness's end marker with
/// status 126 and gives up, so SeaBIOS reboots and QEMU (`-no-reboot`) exits at once.
fn script(scenario: &Scenario, ports: [u16; 2]) -> String {
    let mut s = String::from("#!ipxe\n");
    if let Some(ip) = scenario.static_ip {
        let _ = writeln!(s, "set net0/ip {ip}\nset net0/netmask 255.255.255.0");
        s.push_str("set net0/gateway 10.0.2.2\n");
    }
    if scenario.second_path {
        s.push_str("set net1/ip 10.0.3.15\nset net1/netmask 255.255.255.0\n");
        s.push_str("ifopen net1 || goto failed\n");
    }
    let _ = writeln!(s, "set initiator-iqn {}", scenario.initiator);
    if scenario.auth != Auth::None {
        let _ = writeln!(s, "set username {}\nset password {}", CHAP.0, CHAP.1);
    }
    if scenario.auth == Auth::Mutual {
        let (user, secret) = REVERSE_CHAP;
        let _ = writeln!(
            s,
            "set reverse-username {user}\nset reverse-password {secret}"
        );
    }
    let _ = write!(s, "sanhook iscsi:10.0.2.2::{}:1:{TARGET_IQN}", ports[0]);
    if scenario.second_path {
        let _ = write!(s, " iscsi:10.0.3.2::{}:1:{TARGET_IQN}", ports[1]);
    }
    s.push_str(" || goto failed\n");
    s.push_str("kernel tftp://10.0.2.2/vmlinuz console=ttyS0 quiet panic=-1 no_timer_check");
    s.push_str(" -- dump mem auto acpi\n");
    s.push_str("initrd tftp://10.0.2.2/initrd.cpio || goto failed\n");
    s.push_str("boot || goto failed\n");
    s.push_str(":failed\necho SANSHIM-VM-END rc=126\nexit 1\n");
    s
}

/// The first valid table in a dump of 0x80000–0xFFFFF: signature on a 16-byte boundary, a
/// length that fits, bytes summing to zero. An independent check on sanshim's own scan.
pub fn find_table(lowmem: &[u8]) -> Option<(usize, &[u8])> {
    (0..lowmem.len()).step_by(16).find_map(|at| {
        let head = lowmem.get(at..at + 8)?;
        if &head[..4] != b"iBFT" {
            return None;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let table = lowmem.get(at..at + len).filter(|_| len >= 48)?;
        let sum = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
        (sum == 0).then_some((0x80000 + at, table))
    })
}
