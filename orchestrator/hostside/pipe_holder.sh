# runc-rollout's pipe holder: puts a uid over fs.pipe-user-pages-soft, proves it, holds.
# POSIX sh and util-linux's setpriv only. Run as root: sh -c "$THIS" pipe_holder UID SECONDS
#
# The kernel charges a pipe 16 pages to the uid that creates it while that uid is under the soft
# limit, and 2 pages once it is over (for a process without CAP_SYS_RESOURCE); a FIFO's pipe is
# created when it is first opened. A shell dropped to UID opens soft/16 + 9 FIFOs read-write
# and leaves each ten held by a `sleep` (104 processes at the default limit), so the uid is over. Then, as UID, `head` writes 2 pages + 1 byte into a fresh FIFO
# nobody reads: it blocks in pipe_write only if that pipe got 2 pages, which proves the uid is
# over. Prints one line
#     held=N soft=S hard=H pagesize=P capacity=C uid=U pid=PID
# (C: the fresh pipe's capacity, 2 pages) and holds the pipes until stdin reaches EOF, SIGTERM
# or SIGHUP, or SECONDS pass; then ends every process it started (exit 0). Refuses, with a line
# `refused=REASON soft=S hard=H` and a message on stderr: exit 3 when the soft limit is 0 (pipes
# never shrink), 4 when fs.pipe-user-pages-hard is set and holding would reach it, 5 when the
# fresh pipe was not small (a privileged uid?); 1 on any other error.
uid=$1
seconds=$2
say() { printf '%s\n' "$*"; }
group=
measure=
work=
# shellcheck disable=SC2329 # run by the EXIT trap
release() {
    cd /
    [ -z "$group" ] || kill -KILL "-$group" 2>/dev/null
    [ -z "$measure" ] || kill -KILL "-$measure" 2>/dev/null
    [ -z "$work" ] || rm -rf "$work"
}
trap release EXIT
trap 'exit 0' HUP TERM
trap 'exit 1' INT PIPE
fail() { say "pipe_holder: $1" >&2; exit 1; }
case "$uid" in ''|*[!0-9]*|0) fail "uid $uid is not a positive number";; esac
case "$seconds" in ''|*[!0-9]*) fail "seconds $seconds is not a whole number";; esac
soft=$(cat "$SYSCTL_PROC") || fail "cannot read fs.pipe-user-pages-soft"
hard=$(cat "$SYSCTL_HARD_PROC" 2>/dev/null) || hard=0
refuse() { say "refused=$1 soft=$soft hard=$hard"; say "pipe_holder: $3" >&2; exit "$2"; }
[ "$soft" -gt 0 ] || refuse soft-zero "$HOLDER_EXIT_SOFT_ZERO" "fs.pipe-user-pages-soft is 0"
# The probe container's own pipes (2 pages each once over) must still fit under the hard limit.
if [ "$hard" -gt 0 ] && [ "$hard" -lt $((soft + 16 + 16 + 1024)) ]; then
    refuse hard-limit "$HOLDER_EXIT_HARD_LIMIT" "fs.pipe-user-pages-hard=$hard would be reached over soft=$soft"
fi
# util-linux's setpriv, by its path: busybox's (preferred by its own shell) cannot change uids.
setpriv=
for dir in $(printf '%s' "$PATH" | tr ':' ' ') /usr/bin /bin /usr/sbin /sbin; do
    # shellcheck disable=SC2015 # either test failing means: not this one
    [ -x "$dir/setpriv" ] && "$dir/setpriv" --help 2>&1 | grep -q -e '--reuid' || continue
    setpriv=$dir/setpriv; break
done
[ -n "$setpriv" ] || fail "no setpriv with --reuid (util-linux) on the host"
# A new session (its own process group, ended as one) as the uid: not a function, so that an
# asynchronous `$as_uid ...` is that process itself and `$!` its group.
as_uid="setsid $setpriv --reuid=$uid --regid=$uid --clear-groups"
pagesize=$(getconf PAGESIZE 2>/dev/null) || pagesize=4096
# The FIFOs on a tmpfs where there is one: a thousand made on a disk file system take seconds.
work=$(mktemp -d /dev/shm/pipe-holder.XXXXXX 2>/dev/null || mktemp -d /run/pipe-holder.XXXXXX \
    2>/dev/null || mktemp -d) || fail "cannot make a temporary directory"
pipes=$((soft / 16 + 9))  # enough to be over even if the uid held none; 8 of them small
# shellcheck disable=SC2015 # either failing is the same failure
mkdir "$work/fifo" && chmod 0711 "$work" "$work/fifo" || fail "cannot make the FIFOs' directory"
cd "$work/fifo" || fail "cannot enter $work/fifo"
# shellcheck disable=SC2015 # either failing is the same failure
awk -v n="$pipes" 'BEGIN { for (i = 0; i <= n; i++) print i }' | xargs mkfifo -m 0600 &&
    chown "$uid" ./* || fail "cannot make $pipes FIFOs for uid $uid"
# The script for the uid's shell, on its stdin: it opens every FIFO itself (so each pipe is the
# uid's), ten to a `sleep` that keeps them (fds 0-9); the sleeps end by themselves after
# `seconds`. It says when it is done on its stdout, which no sleep keeps.
awk -v n="$pipes" -v t="$seconds" 'BEGIN {
    for (i = 1; i <= n; i += 10) {
        line = "exec"; held = ""; closing = "exec"
        for (fd = 3; fd <= 9 && i + fd - 3 <= n; fd++) {
            line = line " " fd "<>" (i + fd - 3); closing = closing " " fd ">&-"
        }
        for (fd = 0; fd <= 2; fd++) held = held " " fd "<>" (i + 7 + fd <= n ? i + 7 + fd : "/dev/null")
        if (line != "exec") print line
        print "sleep " t held " &"
        if (closing != "exec") print closing
    }
    print "echo ready"
}' | $as_uid sh > "$work/ready" 2> "$work/error" &
group=$!  # setsid: the shell leads a process group of its own, its sleeps in it
ready() { grep -q '^ready$' "$work/ready" 2>/dev/null; }
waited=0
until ready; do
    if ! kill -0 "$group" 2>/dev/null; then  # the shell ended: it may have just said ready
        ready && break
        fail "uid $uid could not hold $pipes pipes: $(tail -n 1 "$work/error" 2>/dev/null)"
    fi
    [ "$waited" -lt 1200 ] || fail "uid $uid did not hold $pipes pipes in 60 s"
    sleep 0.05; waited=$((waited + 1))
done
# As uid: 2 pages + 1 byte into a fresh pipe (FIFO 0) that nobody reads; again while it is
# large, for a few seconds: the sleeps open their own last three FIFOs after the shell is done.
measure_once() {  # sets small: yes (the writer blocked: a small pipe), no (it wrote it all)
    rm -f "$work/writer"
    # The writer's lifetime is its own (a killer in its group), should this script be killed.
    # shellcheck disable=SC2016 # the uid's shell expands them
    $as_uid sh -c '(sleep 30; kill -KILL $$) & echo $$ >&3; exec head -c "$0" /dev/zero 1<>0' \
        "$((2 * pagesize + 1))" 3> "$work/writer" 2>/dev/null &
    measure=$!  # in this shell, so that release() ends it whenever this script ends
    waited=0
    writer=
    while [ -z "$writer" ] && [ "$waited" -lt 200 ]; do
        writer=$(cat "$work/writer" 2>/dev/null); sleep 0.02; waited=$((waited + 1))
    done
    small=
    waited=0
    while [ -n "$writer" ] && [ -z "$small" ] && [ "$waited" -lt 200 ]; do
        if pipe_wchan "$(cat "/proc/$writer/wchan" 2>/dev/null)"; then
            small=yes  # head only writes: it waits to write
        else
            state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$writer/stat" 2>/dev/null)
            case "$state" in ''|Z|X) small=no;; esac  # it wrote everything: a large pipe
        fi
        [ -n "$small" ] || { sleep 0.02; waited=$((waited + 1)); }
    done
    kill -KILL "-$measure" 2>/dev/null; measure=
}
tries=0
measure_once
until [ "$small" = yes ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 25 ] || refuse not-over "$HOLDER_EXIT_NOT_OVER" "pipes of uid $uid never shrank (a privileged uid?)"
    sleep 0.2
    measure_once
done
say "held=$pipes soft=$soft hard=$hard pagesize=$pagesize capacity=$((2 * pagesize)) uid=$uid pid=$$"
exec 4<&0  # the caller's stdin: an asynchronous command's own is /dev/null
cat <&4 > /dev/null 2>&1 &
reader=$!
# shellcheck disable=SC2217 # stdin too: an asynchronous sleep must not hold the caller's
sleep "$seconds" < /dev/null > /dev/null 2>&1 &
timer=$!
while kill -0 "$reader" 2>/dev/null && kill -0 "$timer" 2>/dev/null; do sleep 1; done
kill "$reader" "$timer" 2>/dev/null
exit 0
