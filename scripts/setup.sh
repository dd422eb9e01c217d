#!/usr/bin/env bash
# Install everything runc-rollout and its lab fleet need on a Debian machine (run as root):
# Debian's packages with apt, then the project into its own virtual environment, .venv, made
# from Debian's /usr/bin/python3 (PEP 668: never pip into the system's Python).
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go (with gcc, libc6-dev and pkg-config for cgo), libseccomp-dev and
# golang-github-opencontainers-runc-dev build the lab's runc 1.0.0-rc93 from Debian's runc
# source; python3-seccomp measures the trigger profile in the tests. gpgv checks an artifact's
# signature (`plan --signature`); gpg makes the tests' throwaway signing key. crun and runsc
# (gVisor) are lab hosts' Docker default runtimes that are not runc. rpm (with rpmbuild) and dnf
# give the lab a host whose runc belongs to an rpm package, with its own rpm database. faketime
# (libfaketime) lets the fault trials jump the controller's clock, never the machine's.
APT_PACKAGES=(docker.io containerd runc openssh-server openssh-client busybox-static crun runsc
              iproute2 procps util-linux python3-venv sudo
              golang-go gcc libc6-dev pkg-config libseccomp-dev golang-github-opencontainers-runc-dev
              python3-seccomp gpgv gpg rpm dnf
              faketime)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=.venv
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
    echo "setup: creating $VENV from /usr/bin/python3" >&2
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'

# The lab's runc 1.0.0-rc93, built once (~20-50 s) and cached in /var/cache/runc-rollout-lab.
"$VENV/bin/runc-rollout" lab build-runc
echo "setup: done; runc-rollout is $PWD/$VENV/bin/runc-rollout" >&2
