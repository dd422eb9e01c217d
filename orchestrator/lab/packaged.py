"""A lab host whose runc belongs to a real Debian package (`lab up --packaged-runc N`).

Such a host has its own dpkg database (hosts/NAME/var-lib-dpkg bound over /var/lib/dpkg, a fresh
one: only the lab's `runc` package is installed in it) and its own /usr/sbin (a tmpfs holding the
machine's entries bound back, except `runc`, which is the package's file there), so that
installing, reinstalling or upgrading the package in that host never touches this machine's
dpkg state or /usr/sbin. /usr/local/sbin holds no runc there: the runtimes find /usr/sbin/runc on
their PATH, as on a Debian or Ubuntu docker.io host.

The packages are built here with dpkg-deb, each holding only /usr/sbin/runc (no documentation:
/usr/share is the machine's):

- `runc` OLD_VERSION: the lab's rc93 build (the incident's runc, what the host starts with);
- `runc` NEW_VERSION: a stand-in for a newer distribution build, so that `audit` can show
  `package-newer`: a sh script that reports NEW_VERSION and runs the machine's runc (Debian's
  1.1.5, copied into the lab's state directory) for everything else. Its version is a label,
  not a build: what it proves is what the package manager and the rollout do with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "runc"
OLD_VERSION = "1.0.0~rc93+ds1-1"
NEW_VERSION = "1.1.12+ds1-1"
NEW_UPSTREAM = "1.1.12"
RUNC_PATH = "/usr/sbin/runc"
DEBS_DIR = "debs"  # in the lab's state directory
MACHINE_RUNC_COPY = "runc-debian"  # the machine's runc, for the stand-in to run
DPKG_DIRS = ("info", "updates", "triggers", "alternatives", "parts")
DPKG_FILES = ("status", "available")
MARKER = "runc-rollout-lab-host"  # in a host's own dpkg database: dpkg runs only where it is


def deb_name(version: str) -> str:
    return f"{PACKAGE}_{version.replace(':', '%3a')}_{_architecture()}.deb"


def _architecture() -> str:
    done = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def stand_in_text(machine_runc: str) -> str:
    """The newer package's runc: reports NEW_UPSTREAM, runs the machine's runc otherwise."""
    return f"""#!/bin/sh
# runc-rollout lab: a stand-in for a newer distribution build of runc ({NEW_VERSION}).
case "$1" in
--version|-v) printf 'runc version {NEW_UPSTREAM}\\ncommit: lab-stand-in\\nspec: 1.0.2-dev\\n'
    exit 0 ;;
esac
exec {machine_runc} "$@"
"""


def control_text(version: str, arch: str) -> str:
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        "Maintainer: runc-rollout lab <lab@localhost>\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: runc-rollout lab: runc as a Debian package\n"
        " Built by `runc-rollout lab up --packaged-runc`; only /usr/sbin/runc.\n"
    )


def build_deb(binary: Path, version: str, out_dir: Path) -> Path:
    """A `runc` .deb of `version` holding `binary` as /usr/sbin/runc (with its md5sums)."""
    arch = _architecture()
    target = out_dir / deb_name(version)
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        root = Path(work) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "usr" / "sbin").mkdir(parents=True)
        shutil.copyfile(binary, root / "usr" / "sbin" / "runc")
        os.chmod(root / "usr" / "sbin" / "runc", 0o755)
        (root / "DEBIAN" / "control").write_text(control_text(version, arch))
        digest = subprocess.run(
            ["md5sum", "usr/sbin/runc"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        (root / "DEBIAN" / "md5sums").write_text(digest)
        for path in (root, root / "DEBIAN", root / "usr", root / "usr" / "sbin"):
            os.chmod(path, 0o755)
        tmp = out_dir / (target.name + ".tmp")
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(tmp)],
            capture_output=True,
            check=True,
        )
        os.replace(tmp, target)
    return target


def build_debs(state_dir: Path, rc93_copy: Path, lab_mount: str) -> tuple[Path, Path]:
    """The old and the new package in STATE/debs (built once)."""
    out = state_dir / DEBS_DIR
    out.mkdir(mode=0o755, exist_ok=True)
    machine = state_dir / MACHINE_RUNC_COPY
    if not machine.exists():
        shutil.copy2(os.path.realpath(RUNC_PATH), machine)
        os.chmod(machine, 0o755)
    old = build_deb(rc93_copy, OLD_VERSION, out)
    stand_in = out / "stand-in-runc"
    stand_in.write_text(stand_in_text(f"{lab_mount}/{MACHINE_RUNC_COPY}"))
    new = build_deb(stand_in, NEW_VERSION, out)
    return old, new


def init_dpkg_dir(path: Path) -> None:
    """A fresh, empty dpkg database (what dpkg needs to install a package into it)."""
    path.mkdir(mode=0o755, exist_ok=True)
    for name in DPKG_DIRS:
        (path / name).mkdir(mode=0o755, exist_ok=True)
    for name in DPKG_FILES:
        (path / name).touch(mode=0o644)
    (path / MARKER).write_text("the dpkg database of one runc-rollout lab host\n")


def reset_commands(old_deb_inside: str) -> list[list[str]]:
    """Inside the host: any diversion of /usr/sbin/runc removed (and its diverted copy), then
    the old package installed (or reinstalled, or downgraded to) by dpkg itself."""
    guard = (
        # Never the machine's own: the host's dpkg database and a /usr/sbin of its own.
        f"[ -f /var/lib/dpkg/{MARKER} ] || {{ echo 'not a lab dpkg database' >&2; exit 1; }}\n"
        '[ "$(stat -f -c %T /usr/sbin)" = tmpfs ] || { echo "/usr/sbin: not own" >&2; exit 1; }\n'
    )
    script = (
        "set -e\n" + guard + f"if dpkg-divert --listpackage {RUNC_PATH} | grep -q .; then\n"
        f"    dpkg-divert --no-rename --remove {RUNC_PATH} >/dev/null\n"
        "fi\n"
        f"rm -f {RUNC_PATH}.distrib {RUNC_PATH}.distrib.runc-rollout.* "
        "/usr/sbin/.runc-rollout-*\n"
        f"dpkg -i {old_deb_inside} >/dev/null\n"
    )
    return [["/bin/sh", "-c", script]]


# ---------------------------------------------------------------------------------------------
# rpm (`lab up --rpm-runc N`): the same runc files as an rpm package `runc`, installed by rpm
# into the host's own rpm database: its own /var/lib/rpm (where dnf looks too), named in its own
# /root/.rpmmacros (Debian's rpm would use ~/.rpmdb). The host hides the dpkg database (an empty
# /var/lib/dpkg of its own, so facts see an rpm host) and has its own /etc/dnf (a copy of the
# machine's, where a hold writes its exclude=).

RPM_OLD_VERSION = ("1.0.0~rc93", "1")  # rpm's Version and Release
RPM_NEW_VERSION = ("1.1.12", "1")
RPMS_DIR = "rpms"
DNF_MARKER = ".runc-rollout-lab-host"  # in a host's own /etc/dnf and /var/lib/rpm
RPM_DB = "/var/lib/rpm"
RPM_MACROS = f"%_dbpath {RPM_DB}\n"  # the host's /root/.rpmmacros


def init_rpm_dir(path: Path, root: Path) -> None:
    """The host's own, empty rpm database directory, and the macro that points rpm at it."""
    path.mkdir(mode=0o755, exist_ok=True)
    for entry in os.scandir(path):
        os.unlink(entry.path)
    (path / DNF_MARKER).write_text("the rpm database of one runc-rollout lab host\n")
    (root / ".rpmmacros").write_text(RPM_MACROS)


def rpm_name(version: tuple[str, str]) -> str:
    return f"{PACKAGE}-{version[0]}-{version[1]}.{_rpm_arch()}.rpm"


def _rpm_arch() -> str:
    done = subprocess.run(["rpm", "--eval", "%{_arch}"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def spec_text(version: tuple[str, str], source: str) -> str:
    return f"""Name: {PACKAGE}
Version: {version[0]}
Release: {version[1]}
Summary: runc-rollout lab: runc as an rpm package
License: Apache-2.0
AutoReqProv: no

%description
Built by `runc-rollout lab up --rpm-runc`; only /usr/sbin/runc.

%install
mkdir -p %{{buildroot}}/usr/sbin
install -m 0755 {source} %{{buildroot}}/usr/sbin/runc

%files
/usr/sbin/runc
"""


def build_rpm(binary: Path, version: tuple[str, str], out_dir: Path) -> Path:
    """An rpm `runc` of `version` holding `binary` as /usr/sbin/runc (rpmbuild, in a
    temporary top directory, its rpm database there too: nothing under ~/rpmbuild or ~/.rpmdb)."""
    target = out_dir / rpm_name(version)
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        top = Path(work)
        spec = top / "runc.spec"
        spec.write_text(spec_text(version, str(binary)))
        subprocess.run(
            [
                "rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"_dbpath {top}/db",
                "--define", "_build_id_links none", "--define", "debug_package %{nil}",
                "--define", "__strip /bin/true", str(spec),
            ],
            capture_output=True, check=True,
        )  # fmt: skip
        (built,) = (top / "RPMS").rglob("*.rpm")
        os.replace(built, target)
    return target


def build_rpms(state_dir: Path, rc93_copy: Path) -> tuple[Path, Path]:
    """The old and the new rpm in STATE/rpms (built once; the new one is the debs' stand-in)."""
    out = state_dir / RPMS_DIR
    out.mkdir(mode=0o755, exist_ok=True)
    stand_in = state_dir / DEBS_DIR / "stand-in-runc"
    return build_rpm(rc93_copy, RPM_OLD_VERSION, out), build_rpm(stand_in, RPM_NEW_VERSION, out)


def init_dnf_dir(path: Path, machine: Path = Path("/etc/dnf")) -> None:
    """The host's /etc/dnf: a copy of the machine's (or a bare dnf.conf where it has none).
    Emptied and filled in place: the directory itself is bound into the host."""
    path.mkdir(mode=0o755, exist_ok=True)
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    if (machine / "dnf.conf").is_file():
        shutil.copytree(machine, path, symlinks=True, dirs_exist_ok=True)
    else:
        (path / "dnf.conf").write_text("[main]\ngpgcheck=True\n")
    (path / DNF_MARKER).write_text("the /etc/dnf of one runc-rollout lab host\n")


def rpm_reset_commands(old_rpm_inside: str) -> list[list[str]]:
    """Inside the host: the old rpm installed afresh (any other `runc` removed first)."""
    guard = (
        f"[ -f /etc/dnf/{DNF_MARKER} ] || {{ echo 'not a lab /etc/dnf' >&2; exit 1; }}\n"
        f"[ -f {RPM_DB}/{DNF_MARKER} ] || {{ echo 'not a lab rpm database' >&2; exit 1; }}\n"
        '[ "$(stat -f -c %T /usr/sbin)" = tmpfs ] || { echo "/usr/sbin: not own" >&2; exit 1; }\n'
        '[ ! -d /var/lib/dpkg/info ] || { echo "a dpkg host" >&2; exit 1; }\n'
    )
    script = (
        "set -e\n" + guard + f'rpm="rpm --dbpath {RPM_DB}"\n'
        f"if $rpm -q {PACKAGE} >/dev/null 2>&1; then $rpm -e --nodeps {PACKAGE}; fi\n"
        f"rm -f {RUNC_PATH} /usr/sbin/.runc-rollout-*\n"
        f"$rpm -i --nodeps {old_rpm_inside} 2>/dev/null\n"
    )
    return [["/bin/sh", "-c", script]]
