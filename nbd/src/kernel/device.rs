//! What sysfs says about `/dev/nbdN` (Linux `Documentation/ABI/stable/sysfs-block`; nbd adds a
//! `pid` file while a device is started, `drivers/block/nbd.c` `nbd_start_device`): whether it
//! exists and is started, and the size, logical block size and read-only state of a started
//! one. (Not its connection count: nbd asks blk-mq for one hardware queue per connection, but
//! blk-mq caps them at the CPU count, so `mq/N` undercounts.)
//!
//! Where debugfs is mounted, `nbd/nbdN/flags` adds the transmission flags the kernel was
//! given. Only file existence and plain numbers are read: the `pid` file is never read, as some
//! kernels (6.1) format it from the task of a server that may have died.

use std::io;
use std::path::{Path, PathBuf};

use super::AttachError;

/// An nbd device: its index and its sysfs directory.
#[derive(Clone, Debug)]
pub(super) struct Device {
    /// The path given (`/dev/nbdN`).
    pub path: PathBuf,
    /// N.
    pub index: u32,
    sys: PathBuf,
    debug: PathBuf,
}

/// The kernel's view of a started device.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Live {
    /// Size in bytes.
    pub size: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// The device refuses writes.
    pub read_only: bool,
}

impl Device {
    /// The device at `path` (`/dev/nbdN`), looked up under `/sys/block`.
    ///
    /// # Errors
    /// [`AttachError::NotNbd`] for another path, [`AttachError::NoDevice`] when the kernel has
    /// no such device (module not loaded, or fewer devices).
    pub fn find(path: &Path) -> Result<Device, AttachError> {
        Device::find_in(
            path,
            Path::new("/sys/block"),
            Path::new("/sys/kernel/debug/nbd"),
        )
    }

    fn find_in(path: &Path, sys_block: &Path, debug: &Path) -> Result<Device, AttachError> {
        let index = device_index(path).ok_or_else(|| AttachError::NotNbd(path.into()))?;
        let sys = sys_block.join(format!("nbd{index}"));
        if !sys.exists() {
            return Err(AttachError::NoDevice(path.into()));
        }
        Ok(Device {
            path: path.into(),
            index,
            sys,
            debug: debug.join(format!("nbd{index}")),
        })
    }

    /// Whether the device is started (configured with sockets, by any client): its `pid` file
    /// exists from `nbd_start_device` until the configuration is torn down.
    pub fn started(&self) -> bool {
        self.sys.join("pid").exists()
    }

    /// Size, block size and read-only state.
    ///
    /// # Errors
    /// A sysfs file that cannot be read or holds no number.
    pub fn live(&self) -> io::Result<Live> {
        let sectors = self.number("size")?;
        let block_size = self.number("queue/logical_block_size")?;
        Ok(Live {
            size: sectors.saturating_mul(512),
            block_size: u32::try_from(block_size).map_err(io::Error::other)?,
            read_only: self.number("ro")? != 0,
        })
    }

    /// The transmission flags the kernel uses, from debugfs (`Hex: 0x0000010d` first); `None`
    /// without debugfs or for a device that is not started.
    pub fn kernel_flags(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.debug.join("flags")).ok()?;
        let hex = text.lines().next()?.strip_prefix("Hex: 0x")?;
        u64::from_str_radix(hex.trim(), 16).ok()
    }

    fn number(&self, file: &str) -> io::Result<u64> {
        let path = self.sys.join(file);
        let text = std::fs::read_to_string(&path)?;
        text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a number: {:?}", path.display(), text.trim()),
            )
        })
    }
}

/// N of `/dev/nbdN`.
fn device_index(device: &Path) -> Option<u32> {
    let name = device.file_name()?.to_str()?;
    let digits = name.strip_prefix("nbd")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_device_index() {
        assert_eq!(device_index(Path::new("/dev/nbd0")), Some(0));
        assert_eq!(device_index(Path::new("/dev/nbd15")), Some(15));
        for bad in ["/dev/nbd", "/dev/sda", "/dev/nbd1p1", "/dev/nbd-1", "/"] {
            assert_eq!(device_index(Path::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn test_live_from_a_sysfs_tree() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("nbd3");
        std::fs::create_dir_all(sys.join("queue")).unwrap();
        let write = |file: &str, text: &str| std::fs::write(sys.join(file), text).unwrap();
        let debug = root.path().join("debug");
        let dev = Device::find_in(Path::new("/dev/nbd3"), root.path(), &debug).unwrap();
        assert_eq!(dev.index, 3);
        assert!(!dev.started());
        assert!(dev.live().is_err(), "no size file yet");
        write("pid", "1234\n");
        write("size", "131072\n");
        write("queue/logical_block_size", "4096\n");
        write("ro", "0\n");
        assert!(dev.started());
        let live = dev.live().unwrap();
        assert_eq!(
            live,
            Live {
                size: 64 << 20,
                block_size: 4096,
                read_only: false,
            }
        );
        write("ro", "1\n");
        assert!(dev.live().unwrap().read_only);
        write("size", "lots\n");
        assert_eq!(dev.live().unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            Device::find_in(Path::new("/dev/nbd4"), root.path(), &debug),
            Err(AttachError::NoDevice(_))
        ));
        assert!(matches!(
            Device::find_in(Path::new("/dev/sda"), root.path(), &debug),
            Err(AttachError::NotNbd(_))
        ));
        // debugfs: the first line of nbd.c's nbd_dbg_flags_show.
        assert_eq!(dev.kernel_flags(), None);
        std::fs::create_dir_all(debug.join("nbd3")).unwrap();
        let flags = "Hex: 0x0000012d\n\nKnown flags:\nNBD_FLAG_HAS_FLAGS\n";
        std::fs::write(debug.join("nbd3/flags"), flags).unwrap();
        assert_eq!(dev.kernel_flags(), Some(0x12d));
    }
}
