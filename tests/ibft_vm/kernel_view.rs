//! What Linux's `iscsi_ibft` driver shows under `/sys/firmware/ibft` for a table, predicted from
//! `sanshim ibft --format json`, and the guest payload that dumps both for comparison.
//!
//! The driver's formatting (drivers/firmware/iscsi_ibft.c, 6.1): numbers `%d`; addresses
//! `%pI4` when IPv4-mapped, else `%pI6` (eight groups of four hex digits, never shortened);
//! the MAC `%pM`; the LUN as each of its 8 bytes `%x` (no zero padding, so `01000000` is
//! LUN 1); strings `%.*s` of their length (stopping at a NUL); `subnet-mask` computed from the
//! prefix and printed without a newline. An address attribute exists only when the address is
//! neither all zeros nor `::ffff:0.0.0.0`; `prefix-len`/`subnet-mask` only for a non-zero
//! prefix; `hostname` only with a non-zero offset; `chap-name`/`chap-secret` only with a CHAP
//! name, `rev-chap-name`/`rev-chap-name-secret` only with a reverse CHAP name. The driver lists
//! every structure the control structure points to, whatever its flags; sanshim lists only
//! those with "block valid", so the comparison keeps the kernel's valid structures only.
//!
//! Not comparable, so left out on both sides: `initiator/index` (sanshim's JSON has no initiator
//! index), `subnet-mask` for prefixes over 32 (the driver shifts by a negative count), a target's
//! `ip-addr` when sanshim says `null` (the driver prints the zero address in the table's own
//! spelling). `acpi_header/signature` is checked against the signature the test wrote.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde_json::Value;

/// The guest payload: `$1` may be `dump` (copy 0x80000–0xFFFFF of /dev/mem to `$OUT/lowmem.bin`),
/// the remaining arguments are `--source` values for the guest's `sanshim ibft`. It loads
/// `iscsi_ibft` itself (the load fails when the driver rejects the table) and prints, tagged:
/// `@@insmod RC`, `@@attr PATH=VALUE`, `@@link ethernetN/device=TARGET`, `@@dmesg LINE`, and
/// per source `@@rc-SRC RC`, `@@json-SRC LINE`, `@@err-SRC LINE`.
pub const PAYLOAD: &str = r#"
echo 1 > /proc/sys/kernel/printk
if [ "$1" = dump ]; then
    shift
    dd if=/dev/mem of="$OUT/lowmem.bin" bs=4096 skip=128 count=128 2>/dev/null || echo "@@dd-failed"
fi
insmod /lib/modules/iscsi_ibft.ko 2>/dev/null
echo "@@insmod $?"
if [ -d /sys/firmware/ibft ]; then
    for f in $(find /sys/firmware/ibft/ -type f | sort); do
        printf '@@attr %s=%s\n' "${f#/sys/firmware/ibft/}" "$(cat "$f")"
    done
    for l in /sys/firmware/ibft/ethernet*/device; do
        [ -e "$l" ] && printf '@@link %s=%s\n' "${l#/sys/firmware/ibft/}" "$(readlink -f "$l")"
    done
fi
dmesg | grep -i -e ibft -e 'iscsi boot' | sed 's/^/@@dmesg /'
for src in "$@"; do
    sanshim ibft --source "$src" --format json --show-secrets >/tmp/json 2>/tmp/err
    echo "@@rc-$src $?"
    sed "s/^/@@json-$src /" /tmp/json
    sed "s/^/@@err-$src /" /tmp/err
done
exit 0
"#;

/// The attributes the driver would show for the valid structures of `doc`, keyed
/// `DIR/ATTRIBUTE` as under /sys/firmware/ibft.
pub fn predict(doc: &Value, signature: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let header = &doc["header"];
    out.insert("acpi_header/signature".to_owned(), signature.to_owned());
    out.insert("acpi_header/oem_id".to_owned(), text(&header["oem_id"]));
    out.insert(
        "acpi_header/oem_table_id".to_owned(),
        text(&header["oem_table_id"]),
    );
    if let Some(initiator) = doc["initiator"].as_object() {
        let mut put = |k: &str, v: String| out.insert(format!("initiator/{k}"), v);
        put("flags", text(&initiator["flags"]));
        for (json, attr) in [
            ("isns", "isns-server"),
            ("slp", "slp-server"),
            ("primary_radius", "pri-radius-server"),
            ("secondary_radius", "sec-radius-server"),
        ] {
            if let Some(ip) = initiator[json].as_str() {
                put(attr, kernel_addr(ip));
            }
        }
        if let Some(name) = initiator["name"].as_str() {
            put("initiator-name", name.to_owned());
        }
    }
    for nic in doc["nics"].as_array().into_iter().flatten() {
        predict_nic(nic, &mut out);
    }
    for target in doc["targets"].as_array().into_iter().flatten() {
        predict_target(target, &mut out);
    }
    out
}

fn predict_nic(nic: &Value, out: &mut BTreeMap<String, String>) {
    let dir = format!("ethernet{}", text(&nic["index"]));
    let mut put = |k: &str, v: String| out.insert(format!("{dir}/{k}"), v);
    for k in ["index", "flags", "origin", "vlan", "mac"] {
        put(k, text(&nic[k]));
    }
    let prefix = nic["prefix"].as_u64().unwrap_or(0);
    if prefix != 0 {
        put("prefix-len", prefix.to_string());
        if prefix <= 32 {
            let mask = u32::MAX << (32 - prefix);
            put("subnet-mask", std::net::Ipv4Addr::from(mask).to_string());
        }
    }
    for (json, attr) in [
        ("ip", "ip-addr"),
        ("gateway", "gateway"),
        ("primary_dns", "primary-dns"),
        ("secondary_dns", "secondary-dns"),
        ("dhcp", "dhcp"),
    ] {
        if let Some(ip) = nic[json].as_str() {
            put(attr, kernel_addr(ip));
        }
    }
    if let Some(hostname) = nic["hostname"].as_str() {
        put("hostname", hostname.to_owned());
    }
}

fn predict_target(target: &Value, out: &mut BTreeMap<String, String>) {
    let dir = format!("target{}", text(&target["index"]));
    let mut put = |k: &str, v: String| out.insert(format!("{dir}/{k}"), v);
    for (json, attr) in [
        ("index", "index"),
        ("flags", "flags"),
        ("port", "port"),
        ("nic", "nic-assoc"),
        ("chap_type", "chap-type"),
    ] {
        put(attr, text(&target[json]));
    }
    if let Some(ip) = target["ip"].as_str() {
        put("ip-addr", kernel_addr(ip));
    }
    put(
        "lun",
        kernel_lun(target["lun_raw"].as_str().unwrap_or_default()),
    );
    if let Some(name) = target["name"].as_str() {
        put("target-name", name.to_owned());
    }
    if let Some(user) = target["chap_user"].as_str() {
        put("chap-name", user.to_owned());
        put(
            "chap-secret",
            target["chap_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    if let Some(user) = target["reverse_chap_user"].as_str() {
        put("rev-chap-name", user.to_owned());
        let secret = target["reverse_chap_secret"].as_str().unwrap_or_default();
        put("rev-chap-name-secret", secret.to_owned());
    }
}

/// The kernel's attributes restricted to what [`predict`] can say: structures without
/// "block valid" dropped, the incomparable attributes of the module doc removed (`doc` tells
/// which targets sanshim printed without an address).
pub fn comparable(kernel: &BTreeMap<String, String>, doc: &Value) -> BTreeMap<String, String> {
    let invalid: Vec<String> = kernel
        .iter()
        .filter(|(k, v)| k.ends_with("/flags") && v.parse::<u8>().is_ok_and(|f| f & 1 == 0))
        .map(|(k, _)| k.trim_end_matches("flags").to_owned())
        .collect();
    let no_ip: Vec<String> = doc["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["ip"].is_null())
        .map(|t| format!("target{}/ip-addr", text(&t["index"])))
        .collect();
    let wide_prefix: Vec<String> = doc["nics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["prefix"].as_u64().is_some_and(|p| p > 32))
        .map(|n| format!("ethernet{}/subnet-mask", text(&n["index"])))
        .collect();
    kernel
        .iter()
        .filter(|(k, _)| !invalid.iter().any(|dir| k.starts_with(dir.as_str())))
        .filter(|(k, _)| *k != "initiator/index" && !no_ip.contains(k) && !wide_prefix.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every difference between two attribute maps, one line each; empty when they agree.
pub fn diff(
    kernel: &BTreeMap<String, String>,
    predicted: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<&String> = kernel.keys().chain(predicted.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| kernel.get(*k) != predicted.get(*k))
        .map(|k| {
            format!(
                "{k}: kernel {:?}, sanshim {:?}",
                kernel.get(k),
                predicted.get(k)
            )
        })
        .collect()
}

/// `%pI4` for IPv4 (and what sanshim prints for IPv4-mapped), `%pI6` for the rest.
fn kernel_addr(ip: &str) -> String {
    match ip.parse::<Ipv6Addr>() {
        Ok(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
        Err(_) => ip.to_owned(),
    }
}

/// Each of the 8 LUN bytes as `%x`.
fn kernel_lun(raw: &str) -> String {
    (0..raw.len() / 2)
        .filter_map(|i| raw.get(2 * i..2 * i + 2))
        .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
        .map(|b| format!("{b:x}"))
        .collect()
}

/// A JSON scalar as the kernel would print it (strings bare, numbers in decimal).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_formats() {
        assert_eq!(kernel_addr("10.0.2.2"), "10.0.2.2");
        assert_eq!(
            kernel_addr("fe80::1"),
            "fe80:0000:0000:0000:0000:0000:0000:0001"
        );
        assert_eq!(kernel_lun("0001000000000000"), "01000000");
        assert_eq!(kernel_lun("0123456789abcdef"), "123456789abcdef");
    }

    #[test]
    fn comparison_drops_invalid_structures_and_reports_differences() {
        let doc = serde_json::json!({
            "header": { "oem_id": "O", "oem_table_id": "T" },
            "initiator": null,
            "nics": [],
            "targets": [{ "index": 0, "flags": 3, "ip": null, "port": 3260, "lun_raw":
                "0001000000000000", "nic": 0, "chap_type": 0, "name": "iqn.x",
                "chap_user": null, "reverse_chap_user": null }],
        });
        let kernel: BTreeMap<String, String> = [
            ("acpi_header/signature", "iBFT"),
            ("acpi_header/oem_id", "O"),
            ("acpi_header/oem_table_id", "T"),
            ("ethernet1/flags", "0"),
            ("ethernet1/index", "1"),
            ("target0/index", "0"),
            ("target0/flags", "3"),
            ("target0/ip-addr", "0.0.0.0"),
            ("target0/port", "3260"),
            ("target0/lun", "01000000"),
            ("target0/nic-assoc", "0"),
            ("target0/chap-type", "0"),
            ("target0/target-name", "iqn.y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let differences = diff(&comparable(&kernel, &doc), &predict(&doc, "iBFT"));
        assert_eq!(
            differences,
            ["target0/target-name: kernel Some(\"iqn.y\"), sanshim Some(\"iqn.x\")"]
        );
    }
}
