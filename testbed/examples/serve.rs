//! Runs a fake target on loopback until killed, for trying an initiator by hand:
//!
//! ```text
//! cargo run -p sanshim-testbed --example serve -- [BLOCKS [BLOCK_SIZE [DIGESTS]]]
//! ```
//!
//! `DIGESTS` is `none` (default), `crc32c` or `initiator`. The portal and IQN are printed on
//! the first line; the counters every five seconds.

use std::time::Duration;

use sanshim_testbed::{Digest, FakeTarget, TargetConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let digest = match arg(2) {
        Some("crc32c") => Digest::Crc32c,
        Some("initiator") => Digest::InitiatorFirst,
        _ => Digest::None,
    };
    let config = TargetConfig {
        block_count: arg(0).and_then(|a| a.parse().ok()).unwrap_or(262_144),
        block_size: arg(1).and_then(|a| a.parse().ok()).unwrap_or(512),
        header_digest: digest,
        data_digest: digest,
        ..TargetConfig::default()
    };
    let target = match FakeTarget::try_start(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start the fake target: {e}");
            std::process::exit(1);
        }
    };
    println!("portal {} iqn {}", target.portal(), target.iqn());
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let c = target.counters();
        eprintln!(
            "connections {} logins {}+{} commands {} read {} B written {} B",
            c.connections,
            c.logins_normal,
            c.logins_discovery,
            c.total_commands(),
            c.lun1_bytes_read(),
            c.lun1_bytes_written()
        );
    }
}
