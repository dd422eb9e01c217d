"""runc version strings compared numerically: rc9 < rc10 < rc93 < 1.0.0 < 1.1.5+ds1 < 1.1.12.

runc has spelled pre-releases `1.0.0-rc93` and `1.4.0-rc.3`; Debian and Ubuntu builds add
`+ds1`, `~rc93` or `-0ubuntu1`; git builds add `+dev`. A `-rcN` pre-release comes before its
release; anything after the core version and pre-release is build metadata and is ignored, so
"1.1.5+ds1" is 1.1.5. A distribution's backported fixes are invisible here: callers say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(
    r"v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?"
    r"(?:[-~.]?(?P<stage>alpha|beta|rc)[.-]?(?P<number>\d*))?"
    r"(?:[-+~_].*)?",
    re.IGNORECASE | re.DOTALL,
)
_STAGES = ("alpha", "beta", "rc")
RELEASE = len(_STAGES)  # a release sorts after every pre-release stage


@dataclass(frozen=True, order=True)
class Version:
    """A parsed version; the field order is the comparison order."""

    major: int
    minor: int
    patch: int
    stage: int = RELEASE  # index into alpha, beta, rc; RELEASE for a release
    number: int = 0  # the pre-release number (93 of rc93)

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core if self.stage == RELEASE else f"{core}-{_STAGES[self.stage]}{self.number}"


def parse_version(text: str) -> Version | None:
    """The version in `text` ("1.0.0-rc93", "v1.4.0-rc.3", "1.1.5+ds1"), or None."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    stage = match.group("stage")
    return Version(
        major=int(match.group("major")),
        minor=int(match.group("minor")),
        patch=int(match.group("patch") or 0),
        stage=_STAGES.index(stage.lower()) if stage else RELEASE,
        number=int(match.group("number") or 0) if stage else 0,
    )


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1 as `left` is older than, the same as or newer than `right`.

    Raises ValueError when either is not a version."""
    a, b = parse_version(left), parse_version(right)
    if a is None or b is None:
        raise ValueError(f"not a runc version: {left if a is None else right!r}")
    return (a > b) - (a < b)
