#!/bin/sh
# ForceCommand of every lab sshd (lab/sshd.py): applies this laptop's disk faults, then
# runs what the client asked for with the user's shell, as sshd itself would.
#
# sshd sets MASTERLINE_PE_ROOT (and MASTERLINE_TARGET_ROOT after a reboot into the OS) and
# MASTERLINE_LAB_LAPTOP_DIR with SetEnv; faults.env is rewritten atomically by the lab.
lab_dir="${MASTERLINE_LAB_LAPTOP_DIR:?pe_shell.sh runs only under a lab sshd}"
# In the PE, `reboot` is the lab's (pe_bin/reboot): it boots the laptop's installed OS.
if [ -z "${MASTERLINE_TARGET_ROOT:-}" ]; then
    PATH="$(dirname "$0")/pe_bin:$PATH"
    export PATH
fi
LAB_DISK_FAULT=""
if [ -f "$lab_dir/faults.env" ]; then
    . "$lab_dir/faults.env"
fi
if [ -n "$LAB_DISK_FAULT" ]; then
    # The dd shim stands in for a failing disk; without a disk fault nothing is wrapped.
    # A program that writes the disk itself (the PE's relay) applies the same fault
    # through the hook (lab/pe_disk_hook.py).
    PATH="$(dirname "$0")/shims:$PATH"
    LAB_DISK_PATH="$lab_dir/disk.img"
    MASTERLINE_LAB_DISK_HOOK="$(dirname "$0")/pe_disk_hook.py"
    export PATH LAB_DISK_FAULT LAB_DISK_AFTER_BYTES LAB_DISK_FLIP_OFFSET LAB_DISK_PATH \
        MASTERLINE_LAB_DISK_HOOK
fi
shell="${SHELL:-/bin/sh}"
if [ -z "${SSH_ORIGINAL_COMMAND:-}" ]; then
    exec "$shell" -l
fi
exec "$shell" -c "$SSH_ORIGINAL_COMMAND"
