//! iBFT acceptance tests in QEMU VMs (TCG) running Debian's kernel: tables written by real
//! firmware (iPXE `sanhook` against a host tgtd) and by `sanshim_ibft::writer`, each read three
//! ways and compared attribute by attribute:
//!
//! - the Linux `iscsi_ibft` driver's view under /sys/firmware/ibft (the reference parser);
//! - `sanshim ibft --source FILE --format json` on the host, on the same bytes;
//! - `sanshim ibft --source mem|acpi|auto` in the guest, where the firmware left the table.
//!
//! Runtime: each writer table is one ~4 s boot (the kernel reads only the first iBFT, so tables
//! cannot share a boot); each iPXE scenario one ~20 s boot. VMs run two at a time.
#![allow(clippy::unwrap_used)]

mod common;
mod vm;

#[path = "ibft_vm/ipxe.rs"]
mod ipxe;
#[path = "ibft_vm/kernel_view.rs"]
mod kernel_view;
#[path = "ibft_vm/tables.rs"]
mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use ipxe::{Auth, Scenario};
use tables::{Case, Kernel};
use vm::{Initramfs, Kit, Vm, VmRun};

#[test]
fn vm_harness_returns_status_console_records_and_files() {
    let kit = vm_kit_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("smoke.cpio");
    let payload =
        "echo \"@@args $*\"\nuname -r | sed 's/^/@@uname /'\necho hi > $OUT/file\nexit 7\n";
    Initramfs::new(payload)
        .module("iscsi_boot_sysfs")
        .build(kit, &initrd);
    let out = dir.path().join("out");
    let run = Vm::kernel(&initrd)
        .append("-- one two")
        .out_dir(&out)
        .run(kit);
    eprintln!("smoke boot took {:?}", run.elapsed);
    assert_eq!(run.status, 7, "console:\n{}", run.console_tail(40));
    assert_eq!(run.records("@@args"), ["one two"]);
    let release = std::fs::read_to_string(kit.kernel_dir().join("version")).unwrap();
    assert_eq!(run.records("@@uname"), [release.trim()]);
    assert_eq!(run.out_file("file"), b"hi\n");
}

#[test]
fn vm_harness_brings_up_dhcp_and_static_networking() {
    let kit = vm_kit_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let payload = format!(
        "ip -4 -o addr show dev eth0 | sed 's/^/@@addr /'\n\
         echo \"hello $(cat /proc/cmdline | grep -o 'vm.net=[a-z]*')\" | nc 10.0.2.2 {port}\n"
    );
    let initrd = dir.path().join("net.cpio");
    Initramfs::new(&payload)
        .module("virtio_net")
        .module("virtio_pci")
        .net(vm::Net::Dhcp)
        .no_share()
        .build(kit, &initrd);
    let accepted = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
            lines.push(text.trim().to_owned());
        }
        lines
    });
    // QEMU's DHCP server leases the address the static set-up uses; the host learns which
    // set-up ran from the message.
    for mode in ["dhcp", "static"] {
        let run = Vm::kernel(&initrd)
            .append(&format!("vm.net={mode}"))
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .run(kit);
        eprintln!("{mode} boot took {:?}", run.elapsed);
        run.expect_success();
        let shown = run.records("@@addr");
        assert!(
            shown.iter().any(|l| l.contains("10.0.2.15/24")),
            "{mode}: eth0 has {shown:?}"
        );
    }
    assert_eq!(
        accepted.join().unwrap(),
        ["hello vm.net=dhcp", "hello vm.net=static"]
    );
}

#[test]
fn ipxe_one_target_dhcp() {
    check_ipxe(&Scenario {
        initiator: "iqn.2026-11.test.sanshim:dhcp",
        static_ip: None,
        second_path: false,
        auth: Auth::None,
    });
}

#[test]
fn ipxe_static_address_one_way_chap() {
    check_ipxe(&Scenario {
        initiator: "iqn.2026-11.test.sanshim:static",
        static_ip: Some("10.0.2.20"),
        second_path: false,
        auth: Auth::OneWay,
    });
}

#[test]
fn ipxe_two_nics_two_targets_mutual_chap() {
    check_ipxe(&Scenario {
        initiator: "iqn.2026-11.test.sanshim:multipath",
        static_ip: None,
        second_path: true,
        auth: Auth::Mutual,
    });
}

#[test]
fn kernel_agrees_with_sanshim_on_writer_tables() {
    let kit = vm_kit_or_skip!();
    let cases = tables::cases();
    assert!(cases.len() >= 20, "only {} writer cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let initrd = guest_initramfs(kit, dir.path(), false);
    let start = Instant::now();
    let queue = Mutex::new(cases.into_iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    // Not `while let`: its scrutinee would hold the lock through the boot.
                    let next = queue.lock().unwrap().next();
                    let Some(case) = next else { break };
                    if let Err(e) = check_case(kit, &initrd, dir.path(), &case) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("[{}] {e}", case.name));
                    }
                }
            });
        }
    });
    eprintln!("writer tables: {:?} in all", start.elapsed());
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The initramfs every iBFT boot uses: the static sanshim, `iscsi_ibft` shipped for the payload
/// to load, and the 9p share only when the low-memory dump must leave the guest.
fn guest_initramfs(kit: &Kit, dir: &Path, share: bool) -> PathBuf {
    let path = dir.join("ibft.cpio");
    let mut initramfs = Initramfs::new(kernel_view::PAYLOAD).ship_module("iscsi_ibft");
    if !share {
        initramfs = initramfs.no_share();
    }
    initramfs.with_sanshim().build(kit, &path);
    path
}

/// Boots one writer table as an ACPI table and compares the kernel's view, the host's parse of
/// the file and the guest's `--source acpi`.
fn check_case(kit: &Kit, initrd: &Path, dir: &Path, case: &Case) -> Result<(), String> {
    let bytes = sanshim_ibft::writer::emit(&case.ibft, &case.layout)
        .map_err(|e| format!("the writer failed: {e}"))?;
    let file = dir.join(format!("{}.ibft", case.name));
    std::fs::write(&file, &bytes).unwrap();
    let host = host_json(&file)?;
    let run = Vm::kernel(initrd)
        .append("-- acpi auto")
        .arg("-acpitable")
        .arg(format!("file={}", file.display()))
        .timeout(Duration::from_secs(120))
        .run(kit);
    eprintln!("[{}] boot took {:?}", case.name, run.elapsed);
    if run.status != 0 {
        return Err(format!(
            "VM status {}:\n{}",
            run.status,
            run.console_tail(30)
        ));
    }
    let signature = String::from_utf8_lossy(&case.ibft.header.signature).into_owned();
    check_kernel_verdict(&run, &host, &signature, case.kernel)?;
    check_guest_json(&run, "acpi", &host)?;
    let auto = guest_json(&run, "auto")?;
    if auto["source"] != "acpi" {
        return Err(format!(
            "--source auto chose {} over the ACPI table",
            auto["source"]
        ));
    }
    Ok(())
}

/// Checks what the kernel made of the table against what sanshim says it would.
fn check_kernel_verdict(
    run: &VmRun,
    host: &Value,
    sig: &str,
    verdict: Kernel,
) -> Result<(), String> {
    let insmod = run
        .records("@@insmod")
        .first()
        .copied()
        .unwrap_or("none")
        .to_owned();
    let kernel = attributes(run);
    let dmesg = run.records("@@dmesg").join("\n");
    let codes = warning_codes(host);
    match verdict {
        Kernel::Agrees => {
            if insmod != "0" {
                return Err(format!(
                    "iscsi_ibft refused the table (insmod {insmod}):\n{dmesg}"
                ));
            }
            compare(&kernel, host, sig)
        }
        Kernel::AgreesUnlessStrictControl if insmod != "0" => {
            let refused = kernel.is_empty() && dmesg.contains("Control header is invalid");
            if refused && codes.iter().any(|c| c == "kernel-ignores") {
                Ok(())
            } else {
                Err(format!(
                    "the kernel refused a table for another reason (insmod {insmod}) or sanshim \
                     gave no kernel-ignores warning ({codes:?}):\n{dmesg}"
                ))
            }
        }
        Kernel::AgreesUnlessStrictControl => compare(&kernel, host, sig),
        Kernel::SkipsStructures => {
            let only_header = insmod == "0" && kernel.keys().all(|k| k.starts_with("acpi_header/"));
            let listed = host["nics"].as_array().is_some_and(|n| !n.is_empty());
            if only_header && listed && codes.iter().any(|c| c == "kernel-ignores") {
                Ok(())
            } else {
                Err(format!(
                    "expected the kernel to skip every structure and sanshim to list them with a \
                     kernel-ignores warning; insmod {insmod}, kernel {kernel:?}, warnings {codes:?}"
                ))
            }
        }
    }
}

/// Compares the kernel's attributes with the prediction from sanshim's JSON.
fn compare(kernel: &BTreeMap<String, String>, doc: &Value, sig: &str) -> Result<(), String> {
    let differences = kernel_view::diff(
        &kernel_view::comparable(kernel, doc),
        &kernel_view::predict(doc, sig),
    );
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "kernel and sanshim disagree:\n  {}",
            differences.join("\n  ")
        ))
    }
}

/// The guest's JSON for `source` must equal the host's parse of the same bytes.
fn check_guest_json(run: &VmRun, source: &str, host: &Value) -> Result<(), String> {
    let mut guest = guest_json(run, source)?;
    if guest["source"] != source {
        return Err(format!(
            "--source {source} reported source {}",
            guest["source"]
        ));
    }
    let mut host = host.clone();
    guest["source"] = Value::Null;
    host["source"] = Value::Null;
    if guest == host {
        Ok(())
    } else {
        Err(format!(
            "guest --source {source} and host --source FILE differ:\n--- guest\n{guest:#}\n--- host\n{host:#}"
        ))
    }
}

fn guest_json(run: &VmRun, source: &str) -> Result<Value, String> {
    let rc = run.records(&format!("@@rc-{source}"));
    let text = run.records(&format!("@@json-{source}")).join("\n");
    let stderr = run.records(&format!("@@err-{source}")).join("\n");
    if rc != ["0"] {
        return Err(format!(
            "guest sanshim ibft --source {source} exited {rc:?}:\n{stderr}"
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("guest --source {source} JSON: {e}\n{text}"))
}

/// `sanshim ibft --source FILE --format json --show-secrets` on the host.
fn host_json(file: &Path) -> Result<Value, String> {
    let out = common::run(
        common::sanshim()
            .args(["ibft", "--format", "json", "--show-secrets", "--source"])
            .arg(file),
    );
    if out.code != 0 {
        return Err(format!(
            "host sanshim ibft exited {}:\n{}",
            out.code, out.stderr
        ));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("host JSON: {e}\n{}", out.stdout))
}

fn attributes(run: &VmRun) -> BTreeMap<String, String> {
    run.records("@@attr")
        .into_iter()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn warning_codes(doc: &Value) -> Vec<String> {
    let warnings = doc["warnings"].as_array().cloned().unwrap_or_default();
    warnings
        .iter()
        .filter_map(|w| w["code"].as_str().map(str::to_owned))
        .collect()
}

/// Boots an iPXE scenario and checks the firmware's table every way there is.
fn check_ipxe(scenario: &Scenario) {
    let kit = vm_kit_or_skip!();
    let _tgtd_present = require_tool_or_skip!("tgtd");
    let dir = tempfile::tempdir().unwrap();
    let initrd = guest_initramfs(kit, dir.path(), true);
    let boot = ipxe::boot(kit, &initrd, scenario, dir.path());
    eprintln!("iPXE boot took {:?}", boot.run.elapsed);
    boot.run.expect_success();

    let lowmem = boot.run.out_file("lowmem.bin");
    let (address, table) = ipxe::find_table(&lowmem).unwrap_or_else(|| {
        panic!(
            "no valid iBFT in the low-memory dump; console:\n{}",
            boot.run.console_tail(60)
        )
    });
    eprintln!("iPXE table: {} bytes at {address:#x}", table.len());
    let file = dir.path().join("ipxe.ibft");
    std::fs::write(&file, table).unwrap();
    let host = host_json(&file).unwrap();

    check_ipxe_content(&host, scenario, boot.ports);
    let kernel = attributes(&boot.run);
    assert_eq!(
        boot.run.records("@@insmod"),
        ["0"],
        "{}",
        boot.run.console_tail(40)
    );
    compare(&kernel, &host, "iBFT").unwrap();
    check_links(&boot.run, &host);
    check_guest_json(&boot.run, "mem", &host).unwrap();
    assert_eq!(guest_json(&boot.run, "auto").unwrap()["source"], "mem");
    let acpi = boot.run.records("@@rc-acpi");
    assert!(
        acpi != ["0"],
        "legacy BIOS iPXE left an ACPI iBFT too? rc {acpi:?}"
    );
    drop(boot.tgtd);
}

/// The values the scenario put into the firmware's table.
fn check_ipxe_content(doc: &Value, scenario: &Scenario, ports: [u16; 2]) {
    let paths = if scenario.second_path { 2 } else { 1 };
    assert_eq!(doc["header"]["oem_id"], "FENSYS", "{doc:#}");
    assert_eq!(doc["header"]["oem_table_id"], "iPXE");
    assert_eq!(doc["header"]["checksum_ok"], true);
    assert_eq!(doc["initiator"]["name"], scenario.initiator);
    let nics = doc["nics"].as_array().unwrap();
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!((nics.len(), targets.len()), (paths, paths), "{doc:#}");

    let nic0 = &nics[0];
    assert_eq!(nic0["ip"], scenario.static_ip.unwrap_or("10.0.2.15"));
    assert_eq!(
        nic0["origin"],
        if scenario.static_ip.is_some() { 1 } else { 3 }
    );
    assert_eq!(
        (&nic0["prefix"], &nic0["gateway"]),
        (&Value::from(24), &Value::from("10.0.2.2"))
    );
    assert_eq!(
        (&nic0["mac"], &nic0["pci_bdf"]),
        (&"52:54:00:12:34:56".into(), &"00:03.0".into())
    );
    if scenario.second_path {
        let nic1 = &nics[1];
        assert_eq!(
            (&nic1["ip"], &nic1["origin"]),
            (&"10.0.3.15".into(), &Value::from(1))
        );
        assert_eq!(
            (&nic1["gateway"], &nic1["pci_bdf"]),
            (&Value::Null, &"00:04.0".into())
        );
        assert_eq!(nic1["mac"], "52:54:00:12:34:57");
    }
    for (i, target) in targets.iter().enumerate() {
        let host = ["10.0.2.2", "10.0.3.2"][i];
        assert_eq!(
            (&target["ip"], &target["port"]),
            (&host.into(), &ports[i].into())
        );
        assert_eq!(
            (&target["lun"], &target["nic"]),
            (&Value::from(1), &Value::from(i))
        );
        assert_eq!(target["name"], ipxe::TARGET_IQN);
        check_ipxe_chap(target, scenario.auth);
    }
}

fn check_ipxe_chap(target: &Value, auth: Auth) {
    let (chap_type, chap, reverse) = match auth {
        Auth::None => (0, None, None),
        Auth::OneWay => (1, Some(ipxe::CHAP), None),
        Auth::Mutual => (2, Some(ipxe::CHAP), Some(ipxe::REVERSE_CHAP)),
    };
    assert_eq!(target["chap_type"], chap_type);
    assert_eq!(
        target["chap_user"],
        chap.map_or(Value::Null, |c| c.0.into())
    );
    assert_eq!(
        target["chap_secret"],
        chap.map_or(Value::Null, |c| c.1.into())
    );
    assert_eq!(
        target["reverse_chap_user"],
        reverse.map_or(Value::Null, |c| c.0.into())
    );
    assert_eq!(
        target["reverse_chap_secret"],
        reverse.map_or(Value::Null, |c| c.1.into())
    );
}

/// The kernel links each NIC to its PCI device; the device must be the one sanshim names.
fn check_links(run: &VmRun, doc: &Value) {
    for nic in doc["nics"].as_array().unwrap() {
        let key = format!("ethernet{}/device=", nic["index"]);
        let link = run
            .records("@@link")
            .into_iter()
            .find_map(|l| l.strip_prefix(key.as_str()));
        let bdf = nic["pci_bdf"].as_str().unwrap();
        let link = link.unwrap_or_else(|| panic!("the kernel links no device for {key}"));
        assert!(
            link.ends_with(&format!("/0000:{bdf}")),
            "{key}{link} is not PCI {bdf}"
        );
    }
}
