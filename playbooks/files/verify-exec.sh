#!/bin/sh
# runc-rollout host step `verify-exec.sh`, rendered from orchestrator/hostside.py by
# `python -m orchestrator.playbook_files`: do not edit.
# Parameters (environment): COMMAND, TIMEOUT
set -u
umask 077
PREFIX=runc-rollout-verify-
id=$(docker ps -q --filter status=running | while read -r c; do
    case "$(docker inspect -f '{{.Name}}' "$c")" in /$PREFIX*) ;; *) echo "$c"; break;; esac
done)
[ -n "$id" ] || { echo exec=none; exit 0; }
timeout -s KILL "$TIMEOUT" docker exec "$id" $COMMAND
rc=$?
[ "$rc" -eq 0 ] || { echo "exec=failed container=$id rc=$rc"; exit "$rc"; }
echo "exec=ok container=$id"
