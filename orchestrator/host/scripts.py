"""The host-side scripts: every file in `orchestrator/hostside/` is a POSIX sh program (or, in
`functions.sh`, functions of one) that runs on a host. Reading that folder answers "what does
this tool run on my hosts?"; this module is the one way their parameters are filled in.

`render` puts a header above a script's text: `set -u`, `umask 077`, then shell-quoted
assignments of the shared constants the script refers to (`constants.SHELL`), of its own
parameters, and of its positional arguments (`set -- ...`), then the functions of
`hostside/functions.sh` it calls. Values are data: quoted, never evaluated, never spliced into
the script's text.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from importlib import resources

from orchestrator.host.constants import SHELL

_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_COMMENT = re.compile(r"(^|\s)#.*", re.M)  # a comment, near enough (never inside a quoted #)


@functools.cache
def hostside_script(name: str) -> str:
    """The text of `orchestrator/hostside/NAME`, without parameters (read once)."""
    return resources.files("orchestrator").joinpath("hostside", name).read_text()


@functools.cache
def functions() -> dict[str, str]:
    """The functions of `hostside/functions.sh` by name, each with the comment above it."""
    found: dict[str, str] = {}
    comment: list[str] = []
    lines = iter(hostside_script("functions.sh").splitlines())
    for line in lines:
        head = re.fullmatch(r"([a-z_][a-z0-9_]*)\(\) \{", line)
        if head is None:
            comment = [*comment, line] if line.startswith("#") else []
            continue
        body = [*comment, line]
        for more in lines:
            body.append(more)
            if more == "}":
                break
        found[head.group(1)] = "\n".join(body) + "\n"
        comment = []
    return found


def _calls(text: str) -> list[str]:
    """The functions of `functions.sh` that `text` calls, with those they call, in file order."""
    defined = functions()
    wanted: set[str] = set()
    todo = [text]
    while todo:
        part = _COMMENT.sub("", todo.pop())
        for name, body in defined.items():
            if name not in wanted and re.search(rf"(^|[\s;|&({{$`]){name}(\s|$|\))", part, re.M):
                wanted.add(name)
                todo.append(body)
    return [name for name in defined if name in wanted]


def render(body: str, *, args: Sequence[str] | None = None, **params: str) -> str:
    """`body` with its header: the constants it refers to and `params` as quoted assignments,
    `args` (when given, even empty) as its positional arguments, the functions it calls."""
    for name in params:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a shell variable name: {name}")
    constants, called = _needs(body)
    used = {name: SHELL[name] for name in constants if name not in params}
    header = "".join(_assign(key, value) for key, value in {**used, **params}.items())
    positional = f"set -- {shlex.join(args)}\n" if args else "set --\n" if args is not None else ""
    return "set -u\numask 077\n" + header + positional + called + body.strip() + "\n"


@functools.lru_cache(maxsize=128)
def _needs(body: str) -> tuple[tuple[str, ...], str]:
    """The shared constants `body` and the functions it calls refer to, and those functions'
    text. Worked out once per script text: a run renders the same few scripts for every host."""
    called = "".join(functions()[name] for name in _calls(body))
    text = body + called
    return tuple(name for name in SHELL if re.search(rf"\$\{{?{name}\b", text)), called


def _assign(name: str, value: str) -> str:
    quoted = shlex.quote(value)
    # A value is data: a `$` in it is never expanded (what shellcheck's SC2016 asks about).
    note = "# shellcheck disable=SC2016 # data\n" if quoted.startswith("'") and "$" in value else ""
    return f"{note}{name}={quoted}\n"


def step(name: str, *, args: Sequence[str] | None = None, **params: str) -> str:
    """The step `hostside/steps/NAME.sh`, rendered."""
    return render(hostside_script(f"steps/{name}.sh"), args=args, **params)
