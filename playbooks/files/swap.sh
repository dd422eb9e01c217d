#!/bin/sh
# runc-rollout host step `swap.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): STAGED, TARGET, SHA
set -u
umask 077
mv -f "$STAGED" "$TARGET" || exit 1
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
