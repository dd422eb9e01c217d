# verify-runc, for hosts without Docker: runc TARGET itself runs a minimal OCI bundle
# (`noNewPrivileges: true`) whose rootfs holds the host's static busybox; the container runs
# `true` within TIMEOUT seconds. The bundle and the container are removed however it ends.
rm -rf "$STATE_DIR"/verify.*  # bundles of a verification whose connection died (we hold the lock)
bundle=$(mktemp -d "$STATE_DIR/verify.XXXXXX") || exit 1
name="$VERIFY_PREFIX$RUN_ID-$$"
root=$STATE_DIR/runc-state
cleanup() { "$TARGET" --root "$root" delete -f "$name" >/dev/null 2>&1; rm -rf "$bundle"; }
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM  # a dropped connection too: clean up on the way out
# busybox's own file, by its path: where sh is busybox, `command -v busybox` names the applet.
bb=
for d in $(printf '%s' "$PATH" | tr ':' ' ') /bin /usr/bin /sbin /usr/sbin; do
    if [ -f "$d/busybox" ] && [ -x "$d/busybox" ]; then bb=$d/busybox; break; fi
done
[ -n "$bb" ] || { echo "error=no busybox for the verify bundle"; exit 1; }
mkdir -p "$bundle/rootfs/bin" && cp "$bb" "$bundle/rootfs/bin/busybox" || exit 1
cd "$bundle" && "$TARGET" spec || exit 1
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's|"sh"|"/bin/busybox", "true"|' config.json
grep -q '"noNewPrivileges": true' config.json || { echo "error=no noNewPrivileges"; exit 1; }
timeout -s KILL "$TIMEOUT" "$TARGET" --root "$root" run --bundle "$bundle" "$name" </dev/null
rc=$?
[ "$rc" -eq 0 ] || { echo "verify=failed rc=$rc"; exit "$rc"; }
echo verify=ok
