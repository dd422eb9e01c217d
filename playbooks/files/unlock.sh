#!/bin/sh
# runc-rollout host step `unlock.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): RUN_ID
set -u
umask 077
if [ "$(cat /var/lib/runc-rollout/lock/owner 2>/dev/null)" = "$RUN_ID" ]; then
    rm -f /var/lib/runc-rollout/lock/owner && rmdir /var/lib/runc-rollout/lock && echo lock=released
else
    echo lock=not-ours
fi
