#!/bin/sh
# runc-rollout host step `set-sysctl.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): VALUE; the files to change as arguments
set -u
umask 077
printf '%s\n' "$VALUE" > /proc/sys/fs/pipe-user-pages-soft || exit 1
while [ $# -ge 1 ]; do
    f=$1
    sum=$(sha256sum "$f" | cut -d' ' -f1) || exit 1
    [ -f /var/lib/runc-rollout/files/$sum ] || cp -p "$f" /var/lib/runc-rollout/files/$sum || exit 1
    sed -i -E 's#^([[:space:]]*-?)fs[./]pipe-user-pages-soft[[:space:]]*=.*$#\1fs.pipe-user-pages-soft = '"$VALUE"'#' "$f" || exit 1
    printf 'file=%s before=%s after=%s\n' "$f" "$sum" "$(sha256sum "$f" | cut -d' ' -f1)"
    shift 1
done
echo runtime=$(cat /proc/sys/fs/pipe-user-pages-soft)
