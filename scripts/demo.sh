#!/usr/bin/env bash
# The main job on a new machine: install everything, bring up the lab fleet in the incident's
# state, and plan a rollout of Debian's runc over it. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

RUN=(python3 -m orchestrator)
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "lab up: a local fleet of real hosts (sshd, dockerd, containerd, runc 1.0.0-rc93)"
"${RUN[@]}" lab up --hosts 4 --docker 2

step "the artifact: Debian's runc, copied and checksummed"
mkdir -p artifacts
cp /usr/sbin/runc artifacts/runc
SHA=$(sha256sum artifacts/runc | cut -d' ' -f1)
echo "artifacts/runc sha256 $SHA" >&2

step "plan: canary waves over the lab inventory, as the change document a reviewer approves"
"${RUN[@]}" plan -i inventories/lab/hosts.yml --runc artifacts/runc --sha256 "$SHA" \
    --waves 1,50%,100% --domain-key zone --max-per-domain 1 -o plan.json --format markdown

step "lab status"
"${RUN[@]}" lab status
