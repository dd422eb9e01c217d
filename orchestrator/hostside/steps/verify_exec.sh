# verify-exec: `docker exec` the command (the arguments) into a container that was running
# before the swap: CONTAINER if given (it must be running), else the first running one that is
# not a verification container; its name is reported.
if [ -n "$CONTAINER" ]; then
    [ "$(docker inspect -f '{{.State.Running}}' -- "$CONTAINER" 2>/dev/null)" = true ] || {
        echo "exec=failed container=$CONTAINER: not running"; exit 1; }
    id=$CONTAINER
else
    id=$(docker ps --filter status=running --format '{{.Names}}' | while read -r c; do
        case "$c" in "$VERIFY_PREFIX"*) ;; *) printf '%s\n' "$c"; break;; esac
    done)
fi
[ -n "$id" ] || { echo exec=none; exit 0; }
# The container is a tenant's: its output (its `true` may print without end) goes to a file,
# EXEC_OUTPUT_CAP bytes of it, the rest read and dropped; its last line explains a failure.
out=$(mktemp "$STATE_DIR/exec.XXXXXX") || exit 1
rc=$({ { timeout -s KILL "$TIMEOUT" docker exec -- "$id" "$@" 2>&1 3>&-; echo "$?" >&3; } \
    | { head -c "$EXEC_OUTPUT_CAP" > "$out"; cat > /dev/null; }; } 3>&1)
said=$(tail -n 1 "$out" | tr -cd '[:print:]' | cut -c1-200); rm -f "$out"
[ "$rc" = 0 ] || { echo "exec=failed container=$id rc=$rc: $said"; exit "${rc:-1}"; }
echo "exec=ok container=$id"
