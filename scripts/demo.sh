#!/usr/bin/env bash
# The main job on a new machine: install everything, bring up the lab fleet in the incident's
# state (a real runc 1.0.0-rc93 on every host, one container really hung in runc init), and walk
# the runbook: audit, unstick, plan, apply wave by wave, audit again, the trigger again (passes);
# then roll one host back.
# Run as root on Debian. `runc-rollout lab down` removes the lab afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

RUN=(.venv/bin/runc-rollout)
INV=inventories/lab/hosts.yml
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "lab up --stuck: 4 real hosts on runc 1.0.0-rc93, lab-01's container lab-stuck hung in runc init"
"${RUN[@]}" lab down >/dev/null  # a lab an earlier demo upgraded starts over in the incident's state
"${RUN[@]}" lab up --hosts 4 --docker 2 --stuck
"${RUN[@]}" lab status

step "lab trigger on lab-02: the rc93 trigger hangs a fresh runc init there too (killed at once)"
if "${RUN[@]}" lab trigger --host lab-02; then echo "demo: rc93 did not hang" >&2; exit 1; fi

step "audit: rc93, the raised sysctl and the hung runc init (read-only)"
"${RUN[@]}" audit -i "$INV"

step "unstick (dry run), then --yes: drain exactly the hung runc init's own pipe"
"${RUN[@]}" unstick -i "$INV"
"${RUN[@]}" unstick -i "$INV" --yes
"${RUN[@]}" lab status

step "the artifact: Debian's runc, copied and checksummed"
mkdir -p artifacts
cp /usr/sbin/runc artifacts/runc
SHA=$(sha256sum artifacts/runc | cut -d' ' -f1)
echo "artifacts/runc sha256 $SHA" >&2

step "plan: canary waves over the lab inventory, as the change document a reviewer approves"
"${RUN[@]}" plan -i "$INV" --runc artifacts/runc --sha256 "$SHA" --gather \
    --waves 1,50%,100% --domain-key zone --max-per-domain 1 -o plan.json --format markdown

step "apply: wave by wave; each host proven by the incident probe before its sysctl is restored"
"${RUN[@]}" apply plan.json --yes --runs-dir runs
RUN_DIR=$(ls -d runs/*/ | tail -n 1)

step "status of the run"
"${RUN[@]}" status "$RUN_DIR"

step "audit --probe: the trigger decides the rc93 hang now; none, nor a raised sysctl, a hung runc init or CVE-2024-21626 (its Debian changelog fixes it)"
"${RUN[@]}" audit -i "$INV" --probe --format json >runs/audit-after.json
.venv/bin/python - runs/audit-after.json <<'PY'
import json, sys
# CVE-2024-21626: Debian's runc 1.1.5+ds1-1+deb12u1 fixes it, as its changelog says.
INCIDENT = {"runc-rc93-pipe-hang", "sysctl-raised", "sysctl-raised-at-boot", "stuck-runc-init",
            "CVE-2024-21626"}
report = json.load(open(sys.argv[1]))
left = {h["host"]: sorted(INCIDENT & {f["id"] for f in h["findings"]}) for h in report["hosts"]}
for host in report["hosts"]:
    print(f"{host['host']}: runc {host['runc_version']}, sysctl {host['sysctl_runtime']}, "
          f"hung runc init {host['stuck_pids'] or 'none'}, probe {host['probe']['outcome']}, "
          f"incident findings {left[host['host']] or 'none'}")
sys.exit(1 if any(left.values()) else 0)
PY
"${RUN[@]}" audit -i "$INV" --fail-on critical >/dev/null

step "lab trigger on every full host: the new runc passes where rc93 hung (exit 1 if not)"
"${RUN[@]}" lab trigger

FIRST_HOST=$(.venv/bin/python -c 'import json; print(json.load(open("plan.json"))["waves"][0]["hosts"][0]["name"])')
step "rollback of one host ($FIRST_HOST) to its recorded before"
"${RUN[@]}" rollback "$RUN_DIR" --host "$FIRST_HOST" --yes

step "lab status: $FIRST_HOST is back on rc93 and 163840, the others on the new runc and 16384"
"${RUN[@]}" lab status
