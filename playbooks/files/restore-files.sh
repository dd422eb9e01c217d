#!/bin/sh
# runc-rollout host step `restore-files.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): for each file its path, sha256 before and sha256 after (or empty), as arguments
set -u
umask 077
while [ $# -ge 3 ]; do
    f=$1
    before=$2 after=$3
    now=$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1)
    if [ "$now" = "$before" ]; then
        printf 'file=%s sha256=%s\n' "$f" "$now"
    elif [ -n "$after" ] && [ "$now" != "$after" ]; then
        cp -p /var/lib/runc-rollout/files/"$before" "$f.runc-rollout-before" || exit 1
        printf 'file=%s sha256=%s kept=1\n' "$f" "$now"
    else
        tmp="$f.runc-rollout.tmp"
        cp -p /var/lib/runc-rollout/files/"$before" "$tmp" && mv -f "$tmp" "$f" || { rm -f "$tmp"; exit 1; }
        printf 'file=%s sha256=%s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
    fi
    shift 3
done
