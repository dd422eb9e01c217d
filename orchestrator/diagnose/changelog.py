"""A distribution package's own changelog, read on the host as data: which advisories it names
as fixed, at or below the installed version.

Distributions backport fixes without changing the upstream version: Debian's runc
1.1.5+ds1-1+deb12u1 fixes CVE-2024-21626, which upstream fixed in 1.1.12. The audit reads the
changelog of the package that owns the runc (Debian: /usr/share/doc/PKG/changelog.Debian.gz;
rpm: `rpm -q --changelog PKG`), bounded, never executed or templated, and parses it here into
versions and the advisory names each entry mentions. Only those (validated) leave this module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from orchestrator.diagnose.advisories import Advisory
from orchestrator.host.scripts import hostside_script, render
from orchestrator.host.session import HostSession, send_script
from orchestrator.models import RuncBinary
from orchestrator.util.fsutil import MiB

CHANGELOG_LIMIT = MiB // 4  # bytes of changelog read on the host (runc's Debian one: 12 KiB)
CHANGELOG_TIMEOUT = 30.0
Format = Literal["debian", "rpm"]
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_PACKAGE_VERSION = re.compile(r"[A-Za-z0-9.+~^_:-]{1,80}")
_DEBIAN_HEADER = re.compile(r"^[a-z0-9][a-z0-9.+-]* \(([^()\s]+)\)", re.MULTILINE)
_RPM_HEADER = re.compile(
    r"^\* [A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{4} .*?(?:\s-\s*|\s)"
    r"(?:\d+:)?([0-9][A-Za-z0-9.+~^_]*-[A-Za-z0-9.+~^_]+)\s*$",
    re.MULTILINE,
)
_BODY = "--changelog--"
# What upstream builds print after `commit:`: a git hash, or `git describe` output.
_UPSTREAM_COMMIT = re.compile(r"(v?\d+\.\d+\S*-\d+-g)?[0-9a-f]{7,40}(-dirty)?")


def changelog_script(package: str) -> str:
    """`hostside/changelog.sh` for `package` (a package name, checked)."""
    if not _PACKAGE.fullmatch(package):
        raise ValueError(f"not a package name: {package!r}")
    return render(
        hostside_script("changelog.sh"), PACKAGE=package, LIMIT=str(CHANGELOG_LIMIT), BODY=_BODY
    )


@dataclass(frozen=True)
class Changelog:
    """What a package's changelog says, as far as the audit needs it."""

    package: str
    version: str | None  # installed, as the package manager reports it
    format: Format | None
    entries: tuple[tuple[str, str], ...] = ()  # (version, text in lowercase), newest first
    problem: str | None = None  # why it could not be used

    def fixed_at(self, advisory: Advisory) -> str | None:
        """The version of the oldest entry at or below the installed one naming `advisory`."""
        return _fixed_at(self, advisory.names)

    def describe(self) -> str:
        return f"package {self.package} {self.version or '?'}"


@functools.lru_cache(maxsize=1024)
def _fixed_at(changelog: Changelog, names: tuple[str, ...]) -> str | None:
    """Cached: a fleet's hosts mostly have the same few package versions, so equal changelogs."""
    if changelog.format is None or changelog.version is None:
        return None
    found = None
    lowered = [name.lower() for name in names]
    for version, text in changelog.entries:
        named = any(_mentions(text, name) for name in lowered)
        if named and compare_package_versions(changelog.format, version, changelog.version) <= 0:
            found = version
    return found


def _mentions(text: str, name: str) -> bool:
    """Whether lowercase `text` has lowercase `name` as a whole word (CVE-2024-2162 is not
    CVE-2024-21626). str.find: a regex with look-arounds took 20 ms per host."""
    start = text.find(name)
    while start != -1:
        end = start + len(name)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "_-") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(name, start + 1)
    return False


def package_of(runc: RuncBinary) -> tuple[str, str | None] | None:
    """The package whose changelog speaks for `runc`, and the version that must be installed
    for it to: the owning package (any version), or, for a copy of a distribution build outside
    any package (its `commit:` is the package version, as Debian prints it), the `runc` package
    at exactly that version."""
    if runc.package:
        return (runc.package, None) if _PACKAGE.fullmatch(runc.package) else None
    build = distribution_build(runc.version, runc.commit)
    return ("runc", build) if build is not None and _PACKAGE_VERSION.fullmatch(build) else None


def distribution_build(version: str | None, commit: str | None) -> str | None:
    """The distribution package version a runc reports as its `commit:` (Debian prints
    "1.1.5+ds1-1+deb12u1" where upstream prints a git commit), if it does."""
    if commit and commit != version and not _UPSTREAM_COMMIT.fullmatch(commit):
        return commit
    return None


def read_changelog(session: HostSession, package: str, build: str | None) -> Changelog:
    """Read `package`'s changelog on the host (one round trip) and parse it."""
    result = send_script(session, changelog_script(package), timeout=CHANGELOG_TIMEOUT)
    return parse_changelog(package, result.stdout[: CHANGELOG_LIMIT + 4096], build)


def parse_changelog(package: str, output: str, build: str | None = None) -> Changelog:
    """The output of `changelog_script`; `build`: the package version a copied runc reports,
    which the installed package must have for its changelog to speak for the copy."""
    head, _, body = output.partition(f"\n{_BODY}\n")
    values = dict(line.partition("=")[::2] for line in head.splitlines() if "=" in line)
    found = values.get("format")
    fmt: Format | None = "debian" if found == "debian" else "rpm" if found == "rpm" else None
    version = values.get("version", "").strip()
    installed = version if _PACKAGE_VERSION.fullmatch(version) else None
    status = values.get("status", "no answer")
    problem = None
    if fmt is None or status != "ok":
        problem = _PROBLEMS.get(status, "changelog not read")
    elif installed is None:
        problem = f"package {package} is not installed"
    elif build is not None and installed != build:
        problem = f"package {package} is {installed}, not this build's {build}"
    if problem is not None:
        return Changelog(package, installed, fmt, problem=problem)
    header = _DEBIAN_HEADER if fmt == "debian" else _RPM_HEADER
    entries = _entries(header, body)
    if not entries:
        return Changelog(package, installed, fmt, problem="changelog has no entry it can read")
    return Changelog(package, installed, fmt, entries=entries)


_PROBLEMS = {
    "missing": "no changelog.Debian.gz (documentation excluded from this host?)",
    "no-gzip": "no gzip, zcat or busybox to read changelog.Debian.gz",
    "no-package-manager": "neither dpkg nor rpm found",
}


def _entries(header: re.Pattern[str], body: str) -> tuple[tuple[str, str], ...]:
    matches = list(header.finditer(body))
    entries = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(body)
        version = match.group(1)
        if _PACKAGE_VERSION.fullmatch(version):
            entries.append((version, body[match.end() : end].lower()))
    return tuple(entries)


# ---------------------------------------------------------------------------------------------
# Package versions, as dpkg and rpm compare them


def compare_package_versions(fmt: Format, left: str, right: str) -> int:
    """-1, 0 or 1 as `left` is older than, the same as or newer than `right`."""
    return _dpkg_compare(left, right) if fmt == "debian" else _rpm_compare(left, right)


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _dpkg_split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    return (int(epoch), upstream, revision) if dash else (int(epoch), rest, "")


def _dpkg_order(char: str) -> int:
    if char == "~":
        return -1
    return ord(char) if char.isalpha() else ord(char) + 256


def _dpkg_part(left: str, right: str) -> int:
    """dpkg's comparison of an upstream version or a revision: alternating runs of non-digits
    (letters before other characters, `~` before everything, even the end) and numbers."""
    a, b = re.findall(r"(\D*)(\d*)", left), re.findall(r"(\D*)(\d*)", right)
    for index in range(max(len(a), len(b))):
        text_a, num_a = a[index] if index < len(a) else ("", "")
        text_b, num_b = b[index] if index < len(b) else ("", "")
        for k in range(max(len(text_a), len(text_b))):
            x = _dpkg_order(text_a[k]) if k < len(text_a) else 0
            y = _dpkg_order(text_b[k]) if k < len(text_b) else 0
            if x != y:
                return _sign(x - y)
        if int(num_a or 0) != int(num_b or 0):
            return _sign(int(num_a or 0) - int(num_b or 0))
    return 0


def _dpkg_compare(left: str, right: str) -> int:
    (ea, ua, ra), (eb, ub, rb) = _dpkg_split(left), _dpkg_split(right)
    if ea != eb:
        return _sign(ea - eb)
    return _dpkg_part(ua, ub) or _dpkg_part(ra, rb)


def _rpm_part(left: str, right: str) -> int:
    """rpmvercmp: alphanumeric segments, numbers newer than letters, `~` older than anything
    (the end too), `^` newer than the end but older than any other segment."""
    a = re.findall(r"~|\^|\d+|[A-Za-z]+", left)
    b = re.findall(r"~|\^|\d+|[A-Za-z]+", right)
    while a or b:
        x, y = (a[0] if a else None), (b[0] if b else None)
        if x == "~" or y == "~":
            if x != y:
                return -1 if x == "~" else 1
        elif x == "^" or y == "^":
            if x != y:
                if x is None or y is None:
                    return -1 if x is None else 1
                return -1 if x == "^" else 1
        elif x is None or y is None:
            return -1 if x is None else 1
        elif x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        elif x.isdigit():
            if int(x) != int(y):
                return _sign(int(x) - int(y))
        elif x != y:
            return -1 if x < y else 1
        a, b = a[1:], b[1:]
    return 0


def _rpm_split(text: str) -> tuple[str, str]:
    """`VERSION-RELEASE` without an epoch (`N:`): the installed one is read without it."""
    version, dash, release = text.rpartition(":")[2].rpartition("-")
    return (version, release) if dash else (release, "")


def _rpm_compare(left: str, right: str) -> int:
    (va, ra), (vb, rb) = _rpm_split(left), _rpm_split(right)
    return _rpm_part(va, vb) or _rpm_part(ra, rb)
