# shellcheck shell=bash disable=SC2034  # the variables are used by the sourcing scripts
# Shared helpers for the scripts in scripts/vm/. Sourced, never run.
#
# Paths derive from this file's location so the scripts work from any clone; the cache directory
# can be moved with SANSHIM_VM_CACHE.

VM_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_REPO_ROOT=$(cd "$VM_SCRIPT_DIR/../.." && pwd)
VM_CACHE=${SANSHIM_VM_CACHE:-$VM_REPO_ROOT/.vm-cache}

# Print a message to stderr and exit 1.
die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# Print a message to stderr.
note() {
    echo "${0##*/}: $*" >&2
}

# Normalise a kernel module name the way the kernel does ('-' and '_' are the same).
mod_name() {
    local n=${1##*/}
    n=${n%.ko}
    echo "${n//-/_}"
}
