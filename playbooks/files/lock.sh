#!/bin/sh
# runc-rollout host step `lock.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): RUN_ID
set -u
umask 077
mkdir -p /var/lib/runc-rollout/backup /var/lib/runc-rollout/files && chmod 0700 /var/lib/runc-rollout || exit 1
if mkdir /var/lib/runc-rollout/lock 2>/dev/null; then
    printf '%s\n' "$RUN_ID" > /var/lib/runc-rollout/lock/owner && echo lock=taken
elif [ "$(cat /var/lib/runc-rollout/lock/owner 2>/dev/null)" = "$RUN_ID" ]; then
    echo lock=resumed
else
    echo "owner=$(cat /var/lib/runc-rollout/lock/owner 2>/dev/null || echo unknown)"
    exit 75
fi
