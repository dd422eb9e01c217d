#!/bin/sh
# runc-rollout host step `backup.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): TARGET, BEFORE
set -u
umask 077
actual=$(sha256sum "$TARGET" | cut -d' ' -f1)
[ "$actual" = "$BEFORE" ] || { echo "actual=$actual"; exit 65; }
dest=/var/lib/runc-rollout/backup/$BEFORE
if [ ! -f "$dest" ] || [ "$(sha256sum "$dest" | cut -d' ' -f1)" != "$BEFORE" ]; then
    cp -p "$TARGET" "$dest.tmp" && sync "$dest.tmp" && mv -f "$dest.tmp" "$dest" || exit 1
fi
echo "backup=$dest"
