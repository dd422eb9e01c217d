#!/bin/sh
# runc-rollout host step `swap.sh`, rendered from orchestrator/hostside.py by
# `python -m orchestrator.playbook_files`: do not edit.
# Parameters (environment): STAGED, TARGET, SHA
set -u
umask 077
mv -f "$STAGED" "$TARGET" || exit 1
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
