#!/bin/sh
# runc-rollout host step `backup-files.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): the files to keep as arguments
set -u
umask 077
while [ $# -ge 1 ]; do
    f=$1
    sum=$(sha256sum "$f" | cut -d' ' -f1) || exit 1
    dest=/var/lib/runc-rollout/files/$sum
    [ "$(sha256sum "$dest" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || \
        { cp -p "$f" "$dest.tmp" && mv -f "$dest.tmp" "$dest"; } || exit 1
    printf 'file=%s before=%s\n' "$f" "$sum"
    shift 1
done
