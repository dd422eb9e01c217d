# unstick: find `runc init` processes hung the incident's way and, with DRAIN=1, free them by
# reading their own pipe. POSIX sh and ordinary tools (readlink, tr, ls, awk, dd, wc, timeout);
# orchestrator/diagnose/unstick.py fills in the header above this comment and parses what this
# prints: `runc-rollout-unstick 2 KEY=VALUE...`, then one `@proc PID` record per runc init
# followed by its `key=value` lines: data, which the controller bounds and sanitises. Nothing
# read from a process is ever executed.
#
# A process is examined when it is a runc init (`runc_init`, as runcinfo.is_runc_init) and this
# host's (as in the facts script: every process in the machine's initial mount namespace, else
# those in this session's mount or UTS namespace, or whose parent is: a daemon in a mount
# namespace of its own keeps the host's UTS namespace). It matches when all of these
# hold, checked in order; `fail=` names the first that does not:
#
# 1. state  asleep (S or D) in pipe_write, anon_pipe_write or (before Linux 5.8) pipe_wait;
# 2.        inside write(2) or writev(2) on fd W (/proc/PID/syscall, per-architecture numbers;
#           `arch`/`nosyscall`/`notwrite` when that cannot be told or is not so);
# 3.        fd W is a pipe opened write-only (`notpipe`) and another fd R is the same pipe (same
#           inode) opened read-only (`noread`; flags from /proc/PID/fdinfo): both ends of one pipe;
# 4.        the incident's pipe: 8192 bytes, full. sh has neither F_GETPIPE_SZ nor FIONREAD, and
#           opening the pipe to ask would need a non-blocking open that sh cannot do: the
#           capacity and the bytes queued are not measurable here without reading. What is
#           proven instead, without opening the pipe:
#           a. `writev`: the call is write(2), whose length L /proc/PID/syscall shows (writev's
#              is in the process's memory);
#           b. `length`: L is a whole seccomp program that overflows 8192 bytes: a multiple of 8
#              (8-byte BPF instructions), more than 8192 and at most 32768 (4096 instructions,
#              the kernel's limit). runc creates the pipe just before one write(2) of the
#              program; that write blocks only once the pipe is full, and an 8192-byte pipe
#              that was empty can only block a write longer than 8192;
#           c. `shared`: no other process on the machine holds that pipe (every /proc/*/fd).
#              Its only reader is the process itself, asleep writing: nobody else will ever
#              read it (the process is deadlocked on its own pipe), reading it takes nothing
#              from anyone else (container output is read by a shim, which holds that pipe),
#              and the pipe is full, since a writer sleeps in pipe_write only while it is;
#           d. `changed`: the same write(2) (number, fd, buffer, length) is still in
#              progress after all of that.
#           So a match is a runc init deadlocked writing a seccomp program into a full pipe
#           only it holds. If the pipe was empty when the write began (runc's is new), its
#           capacity is below L; that it is 8192 is not proven (4096 or 16384 fit too, and a
#           pipe filled before the write could be any size): the report says "capacity not
#           measurable here". DRAIN=1 drains a match all the same, because a-d prove what the
#           capacity stood for: the pipe is the process's own, not container output, and the
#           process cannot go on by itself (only another of its threads could read it, and
#           rc93 reads only once the write returns); reading it takes nothing from anyone else.
#
# Without DRAIN=1 no pipe is opened at all. With it, each match's read end is opened once (and
# checked to be that pipe) and read a page at a time, only while the process is still inside
# that same write(2), within MAX_BYTES and MAX_CS (centiseconds); then the process is watched
# for SETTLE_CS: exited, moved on, or still blocked. No other pipe of it is ever opened.

export LC_ALL=C
PATH=$SYSTEMD_PATH:$PATH
# Fields of /proc files are split into words on purpose, with file name globbing off but where
# asked for (set +f): SC2086 is disabled where that is meant. RUNC_COMMS are globs for `case`.
set -f

now_cs() { # centiseconds since boot, in $now
    read -r up _ </proc/uptime
    now=$((${up%.*} * 100 + 1${up#*.} - 100))
}
rd() { # the first line of file $1 in $v ('' if unreadable)
    v=
    { read -r v <"$1"; } 2>/dev/null
    :
}
nap() { sleep 0.05 2>/dev/null || sleep 1; }

now_cs
began=$now
arch=$(uname -m)
WRITE='' WRITEV=''
for entry in $WRITE_CALLS; do
    case $entry in "$arch":*) IFS=: read -r _ WRITE WRITEV <<EOF
$entry
EOF
    ;;
    esac
done

self_ns=$(readlink /proc/$$/ns/mnt 2>/dev/null)
init_ns=$(readlink /proc/1/ns/mnt 2>/dev/null)
self_uts=$(readlink /proc/$$/ns/uts 2>/dev/null)
ours() { # as the facts script's: daemons in a mount namespace of their own keep the UTS one
    [ "$self_ns" = "$init_ns" ] && return 0
    [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$self_ns" ] && return 0
    [ "$(readlink "/proc/$1/ns/uts" 2>/dev/null)" = "$self_uts" ]
}

runc_init() { # $1 comm, $2 /proc/PID: what runcinfo.is_runc_init says
    case $1 in 'runc:['*) return 0 ;; esac
    runc_comm "$1" || return 1
    a0='' a1=''
    { IFS= read -r a0; IFS= read -r a1; } <<EOF
$(tr '\0' '\n' 2>/dev/null <"$2/cmdline")
EOF
    case ${a0##*/} in *runc) [ "$a1" = init ] ;; *) return 1 ;; esac
}

look() { # $1 PID: state, parent, start ticks, wchan, syscall line ($st $ppid $start $wchan $sc)
    st='' ppid='' start=''
    rd "/proc/$1/stat"
    if [ -n "$v" ]; then
        # shellcheck disable=SC2086
        set -- "$1" ${v##*") "}
        [ $# -lt 21 ] || st=$2 ppid=$3 start=${21}
    fi
    rd "/proc/$1/wchan"
    wchan=$v
    rd "/proc/$1/syscall"
    sc=$v
}

piped() { # $1 PID, $2 wchan: asleep in a pipe write
    case $st in S | D) ;; *) return 1 ;; esac
    pipe_wchan "$2"
}

writing() { # $1 PID, $2 start ticks, $3 the syscall line: still inside that same call
    look "$1"
    [ "$start" = "$2" ] && piped "$1" "$wchan" && [ "$(call "$sc")" = "$(call "$3")" ]
}
call() { # number, fd, buffer and length of a syscall line
    # shellcheck disable=SC2086
    set -- $1
    echo "${1:-} ${2:-} ${3:-} ${4:-}"
}

access() { # $1 PID, $2 fd: 0 read-only, 1 write-only, 2 both ('' if unknown)
    a=
    while read -r k val; do
        [ "$k" = flags: ] && a=$((0$val & 3))
    done 2>/dev/null <"/proc/$1/fdinfo/$2"
    echo "$a"
}

holders() { # $1 PID, $2 pipe link: the other processes holding that pipe
    (set +f && ls -l /proc/[0-9]*/fd/) 2>/dev/null | awk -v pipe="$2" -v self="$1" '
        /^\/proc\/[0-9]+\/fd\/?:$/ { split($0, part, "/"); pid = part[3]; next }
        $NF == pipe && pid != self && !(pid in seen) { seen[pid] = 1; printf "%s ", pid }'
}

examine() { # $1 PID: check the signature; sets fail, W, R, ino, len, shared, sc0
    fail='' W='' R='' ino='' len='' shared=''
    look "$1"
    sc0=$sc
    if ! piped "$1" "$wchan"; then fail=state; return; fi
    [ -n "$WRITE" ] || { fail=arch; return; }
    [ -n "$sc" ] || { fail=nosyscall; return; }
    # shellcheck disable=SC2086
    set -- "$1" $sc
    if [ "$2" != "$WRITE" ] && [ "$2" != "$WRITEV" ]; then fail=notwrite; return; fi
    nr=$2 W=$(($3)) len=$(($5))
    link=$(readlink "/proc/$1/fd/$W" 2>/dev/null)
    case $link in 'pipe:['*']') ino=${link#pipe:[} ino=${ino%]} ;; *) fail=notpipe; return ;; esac
    [ "$(access "$1" "$W")" = 1 ] || { fail=notpipe; return; }
    set +f
    for f in /proc/"$1"/fd/*; do
        set -f
        n=${f##*/}
        [ "$n" != "$W" ] && [ "$(readlink "$f" 2>/dev/null)" = "$link" ] || continue
        [ "$(access "$1" "$n")" = 0 ] || continue
        if [ -z "$R" ] || [ "$n" -lt "$R" ]; then R=$n; fi
    done
    [ -n "$R" ] || { fail=noread; return; }
    [ "$nr" = "$WRITE" ] || { fail=writev; return; }
    if [ $((len % 8)) -ne 0 ] || [ "$len" -le "$CAPACITY" ] || [ "$len" -gt "$MAX_PROGRAM" ]; then
        fail=length
        return
    fi
    shared=$(holders "$1" "$link")
    [ -z "$shared" ] || { fail=shared; return; }
    writing "$1" "$pstart" "$sc0" || fail=changed
}

drain() { # $1 PID: read its pipe R while it is inside that write; sets drained, stop
    drained=0 stop='' quiet=0
    { command exec 3<"/proc/$1/fd/$R"; } 2>/dev/null || { stop=changed; return; }
    if [ "$(readlink /proc/$$/fd/3 2>/dev/null)" != "pipe:[$ino]" ]; then
        exec 3<&-
        stop=changed
        return
    fi
    now_cs
    from=$now
    while :; do
        if ! writing "$1" "$pstart" "$sc0"; then
            [ "$start" = "$pstart" ] || { stop=exited; break; }
            quiet=$((quiet + 1))
            [ "$quiet" -lt 5 ] || { stop=unblocked; break; }
            nap
            continue
        fi
        quiet=0
        [ "$drained" -lt "$MAX_BYTES" ] || { stop=bytes; break; }
        now_cs
        [ $((now - from)) -lt "$MAX_CS" ] || { stop='time'; break; }
        n=$((MAX_BYTES - drained))
        [ "$n" -le 4096 ] || n=4096
        got=$(timeout 1 dd bs="$n" count=1 <&3 2>/dev/null | wc -c)
        drained=$((drained + got))
    done
    exec 3<&-
}

settle() { # $1 PID: sets outcome and after
    now_cs
    until=$((now + SETTLE_CS))
    while :; do
        look "$1"
        if [ "$start" != "$pstart" ] || [ "$st" = Z ] || [ "$st" = X ]; then
            outcome=exited after=''
            return
        fi
        now_cs
        [ "$now" -lt "$until" ] || break
        nap
    done
    # shellcheck disable=SC2086
    set -- "$1" $sc
    after="state $st, wchan $wchan, syscall ${2:-?}"
    if writing "$1" "$pstart" "$sc0"; then outcome='still blocked'; else outcome='moved on'; fi
}

kv() { printf '%s=%s\n' "$1" "$2"; }

echo "runc-rollout-unstick 2 uid=$(id -u) arch=$arch drain=$DRAIN max_bytes=$MAX_BYTES max_cs=$MAX_CS"
set +f
for d in /proc/[0-9]*; do
    set -f
    p=${d#/proc/}
    rd "$d/comm"
    comm=$v
    runc_init "$comm" "$d" || continue
    look "$p"
    [ -n "$start" ] || continue
    ours "$p" || ours "$ppid" || continue
    pstart=$start
    examine "$p"
    echo "@proc $p"
    kv start "$pstart"
    kv comm "$comm"
    kv cmdline "$(tr '\0\n' ' ?' 2>/dev/null <"$d/cmdline" | head -c 512)"
    kv state "$st"
    kv wchan "$wchan"
    # shellcheck disable=SC2086
    kv syscall "$(set -- $sc0 && echo "${1:-} ${2:-}")"
    kv write_fd "$W"
    kv read_fd "$R"
    kv pipe_inode "$ino"
    kv write_bytes "$len"
    kv shared_with "$shared"
    kv fail "$fail"
    [ -z "$fail" ] || { kv action none; continue; }
    if [ "$DRAIN" != 1 ]; then
        kv action 'would drain'
        continue
    fi
    now_cs
    if [ $((now - began + MAX_CS + SETTLE_CS)) -gt "$DEADLINE_CS" ]; then
        kv action skipped
        kv drain_stop budget
        continue
    fi
    drain "$p"
    settle "$p"
    kv action drained
    kv drained_bytes "$drained"
    kv drain_stop "$stop"
    kv outcome "$outcome"
    kv after "$after"
done
