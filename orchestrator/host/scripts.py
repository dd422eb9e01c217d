"""The host-side scripts: every file in `orchestrator/hostside/` is a POSIX sh program that runs
on a host. Reading that folder answers "what does this tool run on my hosts?"."""

from importlib import resources


def hostside_script(name: str) -> str:
    """The text of `orchestrator/hostside/NAME`, without parameters."""
    return resources.files("orchestrator").joinpath("hostside", name).read_text()
