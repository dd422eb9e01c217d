# snapshot: what the invariant checker (orchestrator/lab/invariant.py) looks at on a host after a
# fault: the runc at RUNC, what runc-rollout left in its store and beside the files it changes,
# the sysctl at runtime and in its files. Reads, never changes. The record follows MARK. ALSO
# lists every other runc the plan swaps (paths have no spaces: facts split them on spaces).
export LC_ALL=C
T=$RUNC
S=$STATE_DIR
# shellcheck disable=SC2086 # a list of paths, split on purpose
for a in $ALSO; do  # path exists executable sha256 exit
    x=0 e=0 sum='' rc=''
    [ -e "$a" ] && x=1
    [ -x "$a" ] && e=1
    [ -f "$a" ] && sum=$(sha256sum "$a" | cut -d' ' -f1)
    [ "$e" = 1 ] && { timeout -s KILL 20 "$a" --version >/dev/null 2>&1; rc=$?; }
    echo "also=$a $x $e ${sum:--} ${rc:--}"
    for f in "${a%/*}"/.runc-rollout-*.tmp "${a%/*}"/.runc-rollout-restore.*; do
        [ -e "$f" ] && echo "temp=$f"
    done
done
[ -e "$T" ] && echo exists=1
[ -x "$T" ] && echo executable=1
[ -f "$T" ] && echo "sha256=$(sha256sum "$T" | cut -d' ' -f1)"
if [ -x "$T" ]; then
    out=$(timeout -s KILL 20 "$T" --version 2>&1)
    echo "version_exit=$?"
    echo "version=$(printf '%s\n' "$out" | head -n 1)"
fi
# Temporary files of every step: staged and restored binaries beside the runc, the record's and
# the store's, and those copy_to makes beside every sysctl file it replaces.
for f in "${T%/*}"/.runc-rollout-*.tmp "${T%/*}"/.runc-rollout-restore.* "$RECORD_PATH".* \
    "$S"/verify.* "$S"/exec.* "$S"/host-check.* "$S"/*.cid "$BACKUP_DIR"/*.runc-rollout.* \
    "$FILE_BACKUP_DIR"/*.runc-rollout.* "$SYSCTL_CONF".runc-rollout.*; do
    [ -e "$f" ] && echo "temp=$f"
done
# shellcheck disable=SC2086 # a list of folders, split on purpose (no glob characters)
for d in $SYSCTL_DIRS; do
    for f in "$d"/*.runc-rollout.*; do
        [ -e "$f" ] && echo "temp=$f"
    done
done
[ -d "$LOCK_DIR" ] && echo "lock=$(cat "$LOCK_DIR/owner" 2>/dev/null || echo '?')"
for f in "$BACKUP_DIR"/* "$BACKUP_DIR"/.[!.]*; do
    [ -f "$f" ] && echo "backup=${f##*/} $(sha256sum "$f" | cut -d' ' -f1)"
done
echo "sysctl=$(cat "$SYSCTL_PROC" 2>/dev/null)"
key="^[[:space:]]*-?${SYSCTL_KEY_ERE}[[:space:]]*=[[:space:]]*"
sysctl_file() {
    [ -f "$1" ] && grep -q -E "$SYSCTL_KEY_ERE" "$1" || return 0
    values=$(sed -n -E "s#${key}([^[:space:]]*).*#\\1#p" "$1" | tr '\n' ',')
    echo "sysctl_file=$(readlink -f "$1") $(sha256sum "$1" | cut -d' ' -f1) $values"
}
sysctl_file "$SYSCTL_CONF"
# shellcheck disable=SC2086 # a list of folders, split on purpose (no glob characters)
for d in $SYSCTL_DIRS; do
    for f in "$d"/*.conf; do
        sysctl_file "$f"
    done
done
for p in "$S" "$BACKUP_DIR" "$FILE_BACKUP_DIR" "$RECORD_PATH"; do
    [ -e "$p" ] && echo "mode=$p $(stat -c %a "$p")"
done
if command -v docker >/dev/null 2>&1 && [ -S /run/docker.sock ]; then
    n=$(timeout -s KILL 20 docker ps -aq --filter "name=$VERIFY_PREFIX" | wc -l)
    echo "verify_containers=$n"
fi
echo "$MARK"
cat "$RECORD_PATH" 2>/dev/null
exit 0
