#!/bin/sh
# runc-rollout host step `backup.sh`, rendered from orchestrator/hostside.py by
# `python -m orchestrator.playbook_files`: do not edit.
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
