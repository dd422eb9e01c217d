# host-check: the operator's own health check, `sh -c CHECK` (e.g. kubelet's healthz), with a
# hard timeout of TIMEOUT seconds, stdin closed, and the host's inventory name (HOST) and runc
# path (RUNC) in its environment; the first HOST_CHECK_OUTPUT bytes of its output come back,
# its exit status is this step's.
out=$(mktemp "$STATE_DIR/host-check.XXXXXX") || exit 1
RUNC_ROLLOUT_HOST=$HOST RUNC_ROLLOUT_RUNC=$RUNC \
    timeout -s KILL "$TIMEOUT" sh -c "$CHECK" </dev/null >"$out" 2>&1
rc=$?
head -c "$HOST_CHECK_OUTPUT" "$out"
rm -f "$out"
exit "$rc"
