#!/bin/sh
# runc-rollout host step `verify-exec.sh`, rendered from orchestrator/host/commands.py by
# `python -m orchestrator.backends.ansible.playbooks`: do not edit.
# Parameters (environment): CONTAINER, the command's words as arguments, TIMEOUT
set -u
umask 077
PREFIX=runc-rollout-verify-
if [ -n "$CONTAINER" ]; then
    [ "$(docker inspect -f '{{.State.Running}}' -- "$CONTAINER" 2>/dev/null)" = true ] || {
        echo "exec=failed container=$CONTAINER: not running"; exit 1; }
    id=$CONTAINER
else
    id=$(docker ps --filter status=running --format '{{.Names}}' | while read -r c; do
        case "$c" in "$PREFIX"*) ;; *) printf '%s\n' "$c"; break;; esac
    done)
fi
[ -n "$id" ] || { echo exec=none; exit 0; }
timeout -s KILL "$TIMEOUT" docker exec -- "$id" "$@"
rc=$?
[ "$rc" -eq 0 ] || { echo "exec=failed container=$id rc=$rc"; exit "$rc"; }
echo "exec=ok container=$id"
