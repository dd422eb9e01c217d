"""Who runs `apply` or `resume`: recorded in the journal, the summary and the notifications."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping, Sequence

from orchestrator.models import Operator

NAME_MAX = 128  # characters kept of a user or host name


def current_operator(signers: Sequence[str], environ: Mapping[str, str] = os.environ) -> Operator:
    """The local user (and the user behind sudo, if any), this machine's name, and the
    reviewers whose signatures approved the plan."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        user = str(os.getuid())
    behind = environ.get("SUDO_USER")
    if behind and behind != user:
        user = f"{behind} (as {user})"
    return Operator(
        user=user[:NAME_MAX], host=socket.gethostname()[:NAME_MAX], signers=list(signers)
    )
