#!/usr/bin/env bash
# The main job on a new machine: install everything, bring up the lab fleet in the incident's
# state, plan a rollout of Debian's runc over it, apply it wave by wave, show the run, and roll
# one host back. Run as root on Debian. `runc-rollout lab down` removes the lab afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

RUN=(.venv/bin/runc-rollout)
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "lab up: a local fleet of real hosts (sshd, dockerd, containerd, runc 1.0.0-rc93)"
"${RUN[@]}" lab down >/dev/null  # a lab an earlier demo upgraded starts over in the incident's state
"${RUN[@]}" lab up --hosts 4 --docker 2

step "the artifact: Debian's runc, copied and checksummed"
mkdir -p artifacts
cp /usr/sbin/runc artifacts/runc
SHA=$(sha256sum artifacts/runc | cut -d' ' -f1)
echo "artifacts/runc sha256 $SHA" >&2

step "facts: what each host runs now (read-only)"
"${RUN[@]}" facts -i inventories/lab/hosts.yml

step "plan: canary waves over the lab inventory, as the change document a reviewer approves"
"${RUN[@]}" plan -i inventories/lab/hosts.yml --runc artifacts/runc --sha256 "$SHA" --gather \
    --waves 1,50%,100% --domain-key zone --max-per-domain 1 -o plan.json --format markdown

step "apply: wave by wave; each host is verified before its sysctl is restored"
"${RUN[@]}" apply plan.json --yes --runs-dir runs
RUN_DIR=$(ls -d runs/*/ | tail -n 1)

step "status of the run"
"${RUN[@]}" status "$RUN_DIR"

FIRST_HOST=$(.venv/bin/python -c 'import json; print(json.load(open("plan.json"))["waves"][0]["hosts"][0]["name"])')
step "rollback of one host ($FIRST_HOST) to its recorded before"
"${RUN[@]}" rollback "$RUN_DIR" --host "$FIRST_HOST" --yes

step "lab status: $FIRST_HOST is back on rc93 and 163840, the others on the new runc and 16384"
"${RUN[@]}" lab status
