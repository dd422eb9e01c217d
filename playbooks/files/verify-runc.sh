#!/bin/sh
# runc-rollout host step `verify-runc.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): TARGET, RUN_ID, TIMEOUT
set -u
umask 077
PREFIX=runc-rollout-verify-
rm -rf /var/lib/runc-rollout/verify.*  # bundles of a verification whose connection died (we hold the lock)
bundle=$(mktemp -d /var/lib/runc-rollout/verify.XXXXXX) || exit 1
name="$PREFIX$RUN_ID-$$"
root=/var/lib/runc-rollout/runc-state
cleanup() { "$TARGET" --root "$root" delete -f "$name" >/dev/null 2>&1; rm -rf "$bundle"; }
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM  # a dropped connection too: clean up on the way out
bb=$(command -v busybox) || { echo "error=no busybox for the verify bundle"; exit 1; }
mkdir -p "$bundle/rootfs/bin" && cp "$bb" "$bundle/rootfs/bin/busybox" || exit 1
cd "$bundle" && "$TARGET" spec || exit 1
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's|"sh"|"/bin/busybox", "true"|' config.json
grep -q '"noNewPrivileges": true' config.json || { echo "error=no noNewPrivileges"; exit 1; }
timeout -s KILL "$TIMEOUT" "$TARGET" --root "$root" run --bundle "$bundle" "$name" </dev/null
rc=$?
[ "$rc" -eq 0 ] || { echo "verify=failed rc=$rc"; exit "$rc"; }
echo verify=ok
