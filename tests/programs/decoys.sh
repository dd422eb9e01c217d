# Decoys resembling the incident's hung `runc init` in part, in POSIX sh (they run on hosts
# without Python): copies of dd named `runc:[2:INIT]` (the comm runc's init gives itself) that
# block writing a pipe. The lab tests meet the real hung runc init (rc93 under the trigger)
# beside them.
#
# `sh decoys.sh DIR MODE` (in the background) runs in DIR, which holds two copies of dd,
# `runc:[2:INIT]` and `writer`, and writes the writer's PID to
# MODE.w and, where there is one, the reader's to MODE.r:
# - big: holds both ends of its stdout pipe (64 KiB, no other holder) and blocks writing 100000
#   bytes at once: more than a seccomp program;
# - shared: holds both ends of its stdout pipe, which a reader (sleep, as a shim holding
#   container output) holds too, and blocks in a 16384-byte write once the pipe is full;
# - stdout: blocks writing its stdout, whose read end only the reader holds;
# - deadlock: like shared without the reader: deadlocked on its own pipe in a write of a
#   seccomp program's size, which is all the sh host script can prove of the incident (it
#   cannot tell this 64 KiB pipe, filled before the write, from rc93's fresh 8 KiB one);
# - not-runc: deadlock under another name.
set -eu
cd "$1"
mode=$2
# $1 own|stdout, then the program and its operands: record the PID, take the read end of its
# own stdout (own), become the program.
writer() {
    grab=
    [ "$1" = own ] && grab='exec 3</proc/self/fd/1;'
    shift
    exec sh -c "echo \$\$ >$mode.w; $grab exec \"\$0\" \"\$@\"" "$@"
}
reader() { exec sh -c "echo \$\$ >$mode.r; exec sleep 3600"; }
case $mode in
    big) writer own './runc:[2:INIT]' if=/dev/zero bs=100000 count=1 | : ;;
    shared) writer own './runc:[2:INIT]' if=/dev/zero bs=16384 count=10 | reader ;;
    stdout) writer stdout './runc:[2:INIT]' if=/dev/zero bs=100000 count=1 | reader ;;
    deadlock) writer own './runc:[2:INIT]' if=/dev/zero bs=16384 count=1000 | : ;;
    not-runc) writer own ./writer if=/dev/zero bs=16384 count=10 | : ;;
esac
