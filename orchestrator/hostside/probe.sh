# The incident probe's host script (orchestrator/host/probe.py quotes its parameters above this line).
say() { printf '%s\n' "$@"; }
elapsed() { awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }'; }
dir=
holder=
watcher=
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    exec 3>&- 2>/dev/null  # the holder's stdin: EOF releases its pipes
    [ -z "$watcher" ] || kill -KILL "$watcher" 2>/dev/null
    [ -z "$holder" ] || { kill -TERM "$holder" 2>/dev/null; wait "$holder"; }
    [ -z "$dir" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM
# `uid_procs [UID]`: live (not zombie) processes whose real, effective or saved uid is UID (the
# probe uid), a `PID COMM` line each, from one pass over /proc: the pipe holder alone has
# thousands, so nothing is started per process.
uid_procs() {
    grep -H -e '^Name:' -e '^State:' -e '^Uid:' /proc/[0-9]*/status 2>/dev/null | awk -v u="${1:-$PROBE_UID}" '
        { split($1, p, "/"); pid = p[3] }
        $1 ~ /:Name:$/ { comm[pid] = $2 }
        $1 ~ /:State:$/ { zombie[pid] = ($2 == "Z") }
        $1 ~ /:Uid:$/ && ($2 == u || $3 == u || $4 == u) && !zombie[pid] { print pid, comm[pid] }'
}
fill() {  # $1 with the first $2 in it replaced by $3
    printf '%s%s%s' "${1%%"$2"*}" "$3" "${1#*"$2"}"
}
give_up() { say "probe=$1" "method=$METHOD" "reason=$2"; exit "$EXIT_FAILED"; }

for uid in $PROBE_UIDS; do
    case "$uid" in *[!0-9]*|0) give_up unavailable "probe uid $uid is not a positive number";; esac
done
[ -n "$PROBE_UIDS" ] || give_up unavailable "no probe uid given"
known() {  # whether a user or a group has number $1 (getent: LDAP and SSSD too; 2 is "none")
    if command -v getent >/dev/null 2>&1; then
        timeout -s KILL 10 getent passwd "$1" >/dev/null 2>&1; [ $? -eq 2 ] || return 0
        timeout -s KILL 10 getent group "$1" >/dev/null 2>&1; [ $? -eq 2 ] || return 0
        return 1
    fi
    awk -F: -v u="$1" '$3 == u { found = 1 } END { exit !found }' /etc/passwd /etc/group 2>/dev/null
}
case "$METHOD" in
    docker) command -v docker >/dev/null 2>&1 || give_up unavailable "no docker client";;
    containerd) command -v ctr >/dev/null 2>&1 || give_up unavailable "no ctr (containerd's client)";;
esac
mkdir -p "$STATE_DIR" && chmod 0700 "$STATE_DIR" || exit 1

if [ "$STALE" = remove ]; then
    # What a probe whose connection died left (this one holds the host's lock: apply, resume):
    # its processes, its containers, its directories. Nothing else of the probe uid is touched.
    # First the probe scripts of earlier sessions (never this one or its parents): their own
    # clean-up, when their timeout ends, would kill this probe's holder.
    mine=" $$ "; pid=$$
    while [ "$pid" -gt 1 ] 2>/dev/null; do
        pid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || break
        mine="$mine$pid "
    done
    case "$PROBE_UIDS" in *" "*) line="PROBE_UIDS='$PROBE_UIDS'";; *) line="PROBE_UIDS=$PROBE_UIDS";; esac
    # shellcheck disable=SC2013 # file names of /proc: no blanks in them
    for cmdline in $(grep -l -a -F "# The incident probe's host script" /proc/[0-9]*/cmdline 2>/dev/null); do
        # Only those of this run's probe uids: lab hosts share one machine's processes.
        grep -q -a -x -F "$line" "$cmdline" 2>/dev/null || continue
        pid=${cmdline#/proc/}; pid=${pid%/cmdline}
        case "$mine" in *" $pid "*) ;; *) kill -KILL "$pid" 2>/dev/null;; esac
    done
    killed=
    for uid in $PROBE_UIDS; do
        # A probe's processes: its pipe holder's (sleep, sh, head) or a runc.
        pids=$(uid_procs "$uid" | while read -r pid comm; do
            case "$comm" in sleep|sh|head) echo "$pid";; *) ! runc_comm "$comm" || echo "$pid";; esac
        done)
        # shellcheck disable=SC2086 # one pid a word
        [ -z "$pids" ] || { kill -KILL $pids 2>/dev/null; killed="$killed $uid"; }
    done
    # (Only through the client this probe uses: the others may not reach a daemon, and ctr
    # waits long for a socket that is not there.)
    [ "$METHOD" != docker ] || for c in $(docker ps -aq --filter "name=^$PREFIX" 2>/dev/null); do
        timeout -s KILL 30 docker rm -f "$c" >/dev/null 2>&1
    done
    [ "$METHOD" != containerd ] || for c in $(ctr -n "$NAMESPACE" containers ls -q 2>/dev/null); do
        timeout -s KILL 30 ctr -n "$NAMESPACE" tasks kill -s KILL "$c" >/dev/null 2>&1
        timeout -s KILL 30 ctr -n "$NAMESPACE" containers rm "$c" >/dev/null 2>&1
    done
    for root in "$STATE_DIR"/probe.*/state; do  # bundles: delete them, and their cgroups go too
        [ -d "$root" ] || continue
        for c in $("$TARGET" --root "$root" list -q 2>/dev/null); do
            timeout -s KILL 30 "$TARGET" --root "$root" delete -f "$c" >/dev/null 2>&1
        done
    done
    rm -rf "$STATE_DIR"/probe.*
    waited=0  # killed processes take a moment to go
    for uid in $killed; do
        while [ -n "$(uid_procs "$uid")" ] && [ "$waited" -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
    done
fi
# The first of the run's uids that nothing on the host uses; one that is busy is skipped.
PROBE_UID='' busy=''
for uid in $PROBE_UIDS; do
    if known "$uid"; then busy="$busy $uid (a user or group)"
    elif [ -n "$(uid_procs "$uid")" ]; then busy="$busy $uid (processes)"
    else PROBE_UID=$uid; break
    fi
done
[ -n "$PROBE_UID" ] || give_up unavailable "probe uid in use:$busy: choose another (runc_rollout_probe_uid)"
# PROFILE is the seccomp profile for MACHINE, the `uname -m` the facts saw here ('' for none).
machine=$(uname -m)
[ -n "$PROFILE" ] || give_up unavailable "no seccomp profile for machine $machine"
[ "$machine" = "$MACHINE" ] || give_up unavailable "machine $machine, not $MACHINE as gathered"
dir=$(mktemp -d "$STATE_DIR"/probe.XXXXXX) || exit 1
chmod 0711 "$dir"

printf '%s' "$PROFILE" > "$dir/profile.json"
chmod 0644 "$dir/profile.json"
if [ "$METHOD" != docker ]; then
    # A rootfs with the host's own `true` (as /true) and the libraries it links: no image needed.
    prog=/bin/true; [ -x "$prog" ] || prog=/usr/bin/true
    mkdir -p "$dir/bundle/rootfs/proc" || exit 1
    cp "$prog" "$dir/bundle/rootfs/true" || exit 1
    for lib in $(ldd "$prog" 2>/dev/null | grep -o '/[^ ]*'); do
        mkdir -p "$dir/bundle/rootfs$(dirname "$lib")" || exit 1
        cp -L "$lib" "$dir/bundle/rootfs$lib" || exit 1
    done
    # The spec's three blanks: the probe uid, the rootfs (absolute, as `ctr run --config` wants
    # it), and the seccomp profile of this machine.
    spec=$(fill "$SPEC" '"@UID@"' "$PROBE_UID")
    spec=$(fill "$spec" '"@UID@"' "$PROBE_UID")
    spec=$(fill "$spec" '@ROOTFS@' "$dir/bundle/rootfs")
    spec=$(fill "$spec" '"@SECCOMP@"' "$PROFILE")
    printf '%s\n' "$spec" > "$dir/bundle/config.json" || exit 1
    chmod -R a+rX "$dir/bundle"
fi

mkfifo "$dir/hold" || exit 1
sh -c "$HOLDER" pipe_holder "$PROBE_UID" "$((TIMEOUT + READY_SECONDS + 120))" \
    < "$dir/hold" > "$dir/holder.out" 2> "$dir/holder.err" &
holder=$!
exec 3> "$dir/hold"
waited=0
until grep -q '^held=' "$dir/holder.out" 2>/dev/null; do
    if ! kill -0 "$holder" 2>/dev/null; then
        case "$(cat "$dir/holder.out" 2>/dev/null)" in
            refused=soft-zero*) give_up undecidable "fs.pipe-user-pages-soft is 0: the kernel never shrinks pipes";;
            refused=hard-limit*) give_up undecidable "fs.pipe-user-pages-hard would be reached: a probe container could not create its pipes";;
            refused=not-over*) give_up undecidable "the probe uid's pipes never shrank";;
        esac
        give_up unavailable "pipe holder: $(tail -n 1 "$dir/holder.err" 2>/dev/null)"
    fi
    [ "$waited" -lt $((READY_SECONDS * 10)) ] || give_up unavailable "pipe holder not ready in ${READY_SECONDS}s"
    sleep 0.1; waited=$((waited + 1))
done
say "probe_holder=$(grep '^held=' "$dir/holder.out" | head -n 1)"

init_wchan() {  # where the probe uid's runc init sleeps: a pipe write if any thread is in one
    found=
    for pid in $(uid_procs | while read -r p comm; do ! runc_comm "$comm" || echo "$p"; done); do
        for task in "/proc/$pid/task/"*/wchan; do  # the blocked write may be on any of its threads
            now=$(cat "$task" 2>/dev/null)
            if pipe_wchan "$now"; then printf '%s\n' "$now"; return; fi
            [ -n "$found" ] || found=$now
        done
    done
    [ -z "$found" ] || printf '%s\n' "$found"
}
# Where its runc init was last seen asleep, watched from half the timeout on: killing ctr makes
# containerd end the container's runc init at once, before anything could look afterwards.
watch_init() {  # (short sleeps: killed, it leaves nothing sleeping behind for long)
    n=0
    while :; do
        if [ "$n" -ge "$TIMEOUT" ] && now=$(init_wchan) && [ -n "$now" ]; then
            printf '%s\n' "$now" > "$dir/seen.new" && mv -f "$dir/seen.new" "$dir/seen"
        fi
        sleep 0.5; n=$((n + 1))
    done
}
name="$PREFIX$RUN_ID-$$"
watch_init > /dev/null 2>&1 3>&- &
watcher=$!
start=$(cut -d' ' -f1 /proc/uptime)
case "$METHOD" in
docker)
    timeout -s KILL "$TIMEOUT" docker run --rm --cidfile "$dir/cid" --network none \
        --security-opt no-new-privileges --security-opt "seccomp=$dir/profile.json" \
        --user "$PROBE_UID:$PROBE_UID" --name "$name" "$IMAGE" true > "$dir/out" 2>&1 ;;
containerd)
    timeout -s KILL "$TIMEOUT" ctr -n "$NAMESPACE" run --rm --null-io --runc-binary "$TARGET" \
        --config "$dir/bundle/config.json" "$name" > "$dir/out" 2>&1 ;;
*)
    timeout -s KILL "$TIMEOUT" "$TARGET" --root "$dir/state" run --bundle "$dir/bundle" "$name" \
        < /dev/null > "$dir/out" 2>&1 ;;
esac
rc=$?
took=$(elapsed "$start")
kill -KILL "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null; watcher=
if [ "$rc" -eq 0 ]; then
    say probe=passed "method=$METHOD" "seconds=$took"
    exit 0
fi

# Not started in time, or failed: record where its runc init is, then end exactly the probe's
# processes (the probe uid's, and runtime processes naming its container), and the container.
wchan=$(init_wchan)
seen=$(cat "$dir/seen" 2>/dev/null)
if ! pipe_wchan "$wchan" && { pipe_wchan "$seen" || [ -z "$wchan" ]; }; then wchan=$seen; fi
id=$(cat "$dir/cid" 2>/dev/null)
remove_container() {
    case "$METHOD" in
        docker) timeout -s KILL 30 docker rm -f "$name" >/dev/null 2>&1 ;;
        containerd) timeout -s KILL 30 ctr -n "$NAMESPACE" tasks kill -s KILL "$name" >/dev/null 2>&1
            timeout -s KILL 30 ctr -n "$NAMESPACE" containers rm "$name" >/dev/null 2>&1 ;;
        *) timeout -s KILL 30 "$TARGET" --root "$dir/state" delete -f "$name" >/dev/null 2>&1 ;;
    esac
}
# containerd ends the shim's runc processes itself: killed under it first, they leave its shim
# running with nothing to serve.
[ "$METHOD" != containerd ] || remove_container
ends=$({
    uid_procs
    grep -l -a -F -e "$name" ${id:+-e "$id"} /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 |
        while read -r pid; do printf '%s %s\n' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null)"; done
} | awk -v me=$$ -v holder="$holder" '$1 != me && $1 != holder && $2 !~ /^containerd-shim/ &&
    $2 !~ /^(dockerd|containerd|sh|timeout)$/ { print $1 }')
# shellcheck disable=SC2086 # one pid a word
[ -z "$ends" ] || kill -KILL $ends 2>/dev/null
[ "$METHOD" = containerd ] || remove_container
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    if pipe_wchan "$wchan"; then
        say probe=hung "method=$METHOD" "seconds=$took" "wchan=$wchan"
    else case "$wchan" in
        '') say probe=failed "method=$METHOD" "seconds=$took" \
            "reason=timed out after ${TIMEOUT}s, with no runc init of the probe uid";;
        *) say probe=failed "method=$METHOD" "seconds=$took" \
            "reason=timed out after ${TIMEOUT}s, runc init in $wchan, not blocked writing a pipe";;
    esac; fi
else
    say probe=failed "method=$METHOD" "seconds=$took" "rc=$rc" "reason=$(tail -n 1 "$dir/out" | tr -cd '[:print:]' | cut -c1-200)"
fi
exit "$EXIT_FAILED"
