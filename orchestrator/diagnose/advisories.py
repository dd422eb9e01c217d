"""runc's known bugs and security advisories by upstream version range: the table shipped in
`orchestrator/data/advisories.json`, or an operator's own file in the same format
(`--advisories FILE`, checked by `runc-rollout advisories --check FILE`)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from orchestrator.diagnose.versions import Version, parse_version
from orchestrator.errors import BadInput
from orchestrator.models import Model, Severity, VersionRange
from orchestrator.util.fsutil import MiB, read_input

RC93_HANG = "runc-rc93-pipe-hang"
ADVISORIES_LIMIT = 4 * MiB
SHIPPED = "orchestrator/data/advisories.json"


class AffectedRange(VersionRange):
    """A range of the table: both ends must be versions."""

    @model_validator(mode="after")
    def _versions(self) -> AffectedRange:
        for text in (self.introduced, self.fixed):
            if text is not None and parse_version(text) is None:
                raise ValueError(f"not a version: {text!r}")
        return self


def in_range(bounds: VersionRange, version: Version) -> bool:
    low = parse_version(bounds.introduced) if bounds.introduced else None
    high = parse_version(bounds.fixed) if bounds.fixed else None
    return (low is None or version >= low) and (high is None or version < high)


def build_affected(
    affected: Iterable[VersionRange],
    commits: Iterable[str],
    version: str | None,
    commit: str | None,
) -> bool:
    """Whether a build with this upstream `version` (or `commit`) is in one of the `affected`
    ranges, or its commit starts with one of `commits`."""
    short = (commit or "").rpartition("-g")[2]  # `git describe`: the hash after -g
    if short and any(short.startswith(prefix) for prefix in commits):
        return True
    parsed = parse_version(version) if version else None
    return parsed is not None and any(in_range(bounds, parsed) for bounds in affected)


class Advisory(Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    aliases: tuple[str, ...] = ()
    kind: Literal["bug", "security"]
    title: str = Field(max_length=300)
    severity: Severity
    affected: tuple[AffectedRange, ...] = Field(min_length=1)
    fixed_in: tuple[str, ...]
    commits: tuple[str, ...] = ()  # commit prefixes identifying an affected build
    # Words a distribution's changelog uses for this fix besides the id and aliases (a bug
    # without a CVE: its upstream pull request).
    changelog_mentions: tuple[str, ...] = ()
    source: str
    references: tuple[str, ...] = ()

    def affects_build(self, version: str | None, commit: str | None) -> bool:
        return build_affected(self.affected, self.commits, version, commit)

    @property
    def names(self) -> tuple[str, ...]:
        """What a changelog may call this advisory's fix."""
        return (self.id, *self.aliases, *self.changelog_mentions)


class AdvisoryData(Model):
    schema_version: Literal[1]
    date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")  # of the table
    about: str
    advisories: tuple[Advisory, ...]

    @model_validator(mode="after")
    def _unique(self) -> AdvisoryData:
        ids = [advisory.id for advisory in self.advisories]
        repeated = sorted({name for name in ids if ids.count(name) > 1})
        if repeated:
            raise ValueError(f"advisory ids appear more than once: {', '.join(repeated)}")
        return self


def shipped_advisories() -> AdvisoryData:
    """The table shipped with the package."""
    text = resources.files("orchestrator").joinpath("data/advisories.json").read_text()
    try:
        return AdvisoryData.model_validate_json(text)
    except ValidationError as error:  # a packaging bug, not a user error
        raise RuntimeError(f"{SHIPPED} is invalid: {error}") from error


def read_advisories(path: Path) -> AdvisoryData:
    """An operator's advisories file: a regular file (not a link), bounded, in the shipped
    format, with the rc93 hang among its entries; `BadInput` naming the file and the first
    problem otherwise."""
    raw = read_input(path, ADVISORIES_LIMIT, "advisories file", follow=False)
    try:
        data = AdvisoryData.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise BadInput(f"{path}: {where}: {first['msg']}") from None
    if RC93_HANG not in {advisory.id for advisory in data.advisories}:
        raise BadInput(
            f"{path}: has no {RC93_HANG} entry (copy it from the shipped table): plan refuses "
            "that bug by it"
        )
    return data


def advisory_table(path: Path | None = None) -> AdvisoryData:
    """The table of `path` (`--advisories`), else the shipped one."""
    return read_advisories(path) if path is not None else shipped_advisories()


def load_advisories(path: Path | None = None) -> tuple[Advisory, ...]:
    return advisory_table(path).advisories


def describe_table(data: AdvisoryData, path: Path | None) -> str:
    """Which advisories were used, as plan and audit name them."""
    where = str(path) if path is not None else "the shipped table"
    return f"{where} ({len(data.advisories)} advisories, dated {data.date or 'undated'})"


def affecting(
    advisories: Iterable[Advisory], version: str | None, commit: str | None
) -> list[Advisory]:
    return [advisory for advisory in advisories if advisory.affects_build(version, commit)]
