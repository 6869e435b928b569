//! ALUA (SPC-5 §5.16): which paths carry I/O when the target states access states per
//! target port group. Active/optimized paths are used first, active/non-optimized (and
//! logical-block-dependent) ones only when no better path works, standby, unavailable,
//! offline and transitioning ones never. The states are read at login (`inspect`), and again
//! on UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED and when a path comes back.

use std::sync::atomic::Ordering;

use sanshim_initiator::inspect::{self, AluaReport};
use sanshim_initiator::scsi::AccessState;
use tracing::info;

use crate::path::{Path, RANK_OPTIMIZED};

/// What ALUA says about a path.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Access {
    /// It may carry I/O, at this rank (lower is better).
    Io(u32),
    /// It may not: its group is in this state.
    None(AccessState),
}

/// The access of a path from its group's state (no ALUA, or no state known: optimized).
pub(crate) fn access(state: Option<AccessState>) -> Access {
    match state {
        None => Access::Io(RANK_OPTIMIZED),
        Some(s) => match s.io_rank() {
            Some(rank) => Access::Io(u32::from(rank)),
            None => Access::None(s),
        },
    }
}

/// The path's access as inspection found it at login.
pub(crate) fn initial(path: &Path) -> Access {
    access(path.disk.report().alua.as_ref().and_then(AluaReport::state))
}

/// Reads the target port groups again through `path` and returns its access; a failure
/// keeps what was known.
pub(crate) async fn refresh(path: &Path) -> Access {
    let Some(known) = path.disk.report().alua.as_ref() else {
        return Access::Io(RANK_OPTIMIZED);
    };
    if !known.tpgs.supported() {
        return Access::Io(RANK_OPTIMIZED);
    }
    let session = path.disk.session();
    match inspect::report_target_port_groups(session, path.disk.lun()).await {
        Ok(groups) => {
            let now = AluaReport {
                groups: Some(groups),
                ..known.clone()
            };
            let access = access(now.state());
            info!(path = path.index + 1, name = %path.name, ?access, "ALUA state read");
            access
        }
        Err(_) => initial(path),
    }
}

/// Applies an access to a path's rank; `true` when it may carry I/O.
pub(crate) fn apply(path: &Path, access: Access) -> bool {
    match access {
        Access::Io(rank) => {
            path.rank.store(rank, Ordering::Relaxed);
            true
        }
        Access::None(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimized_first_standby_never() {
        assert_eq!(access(None), Access::Io(0));
        assert_eq!(access(Some(AccessState::ACTIVE_OPTIMIZED)), Access::Io(0));
        assert_eq!(
            access(Some(AccessState::ACTIVE_NON_OPTIMIZED)),
            Access::Io(1)
        );
        for s in [
            AccessState::STANDBY,
            AccessState::UNAVAILABLE,
            AccessState::OFFLINE,
            AccessState::TRANSITIONING,
        ] {
            assert_eq!(access(Some(s)), Access::None(s));
        }
    }
}
