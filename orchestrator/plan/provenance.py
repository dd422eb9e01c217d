"""Where the artifact comes from: upstream's `sha256sum` file and its detached OpenPGP signature.

runc's releases ship `runc.sha256sum` (lines `HEX  runc.amd64`) and `runc.amd64.asc`, a detached
signature checked against the release keyring (`runc.keyring`, ASCII-armored). The signature
is checked with gpgv (Debian's `gpgv` package) before anything else is done with the file;
gpgv reads binary keyrings only, so an armored one is unpacked here first, into a scratch
directory that is also gpgv's home (the operator's own ~/.gnupg is never read or written).
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from orchestrator.errors import ArtifactError
from orchestrator.models import Provenance
from orchestrator.plan.artifact import normalize_sha256
from orchestrator.util.fsutil import MiB, read_input
from orchestrator.util.textsafe import terminal_safe

SUMS_LIMIT = MiB
SIGNATURE_LIMIT = 64 * 1024
KEYRING_LIMIT = 16 * MiB
GPGV_TIMEOUT = 60.0
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_ARMOR = re.compile(
    rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S
)


def sha256_from_file(path: Path, name: str) -> str:
    """The checksum `path` (sha256sum format) gives for the file called `name` (a line for
    `./name` or `dir/name` counts too)."""
    raw = read_input(path, SUMS_LIMIT, "sha256 file (--sha256-file)", follow=False)
    found: dict[str, str] = {}
    names: list[str] = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        match = _SUM_LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            continue
        listed = match.group(2)
        names.append(listed)
        if listed == name or listed.rsplit("/", 1)[-1] == name:
            found[listed] = match.group(1).lower()
    if not found:
        shown = ", ".join(terminal_safe(n)[:60] for n in names[:8]) or "no sha256sum lines"
        raise ArtifactError(
            f"--sha256-file {path}: no line for {terminal_safe(name)!r} ({shown}); "
            "--sha256-name picks another"
        )
    if len(set(found.values())) > 1:
        raise ArtifactError(f"--sha256-file {path}: different checksums for {name!r}")
    return next(iter(found.values()))


def dearmored(keyring: bytes) -> bytes:
    """The binary keys of an ASCII-armored keyring (every block, in order); binary as it is."""
    blocks = _ARMOR.findall(keyring)
    if not blocks:
        return keyring
    packets = b""
    for block in blocks:
        head, blank, body = block.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = (body if blank else head).split(b"\n")
        data = b"".join(line for line in lines if line and not line.startswith(b"="))
        try:
            packets += base64.b64decode(data, validate=True)
        except binascii.Error:
            raise ArtifactError("--keyring: an armored key block is not valid base64") from None
    return packets


def check_signature(artifact: Path, signature: Path, keyring: Path) -> str:
    """The fingerprint of the (primary) key whose good signature `signature` is of `artifact`,
    by gpgv against `keyring`; `ArtifactError` saying why not otherwise."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ArtifactError("--signature: gpgv is not installed (Debian's package gpgv)")
    read_input(signature, SIGNATURE_LIMIT, "signature (--signature)", follow=False)
    keys = dearmored(read_input(keyring, KEYRING_LIMIT, "keyring (--keyring)", follow=False))
    if not artifact.is_file():
        raise ArtifactError(f"--runc: {artifact} does not exist or is not a regular file")
    with tempfile.TemporaryDirectory(prefix="runc-rollout-gpgv-") as home:
        ring = Path(home) / "keyring.gpg"
        ring.write_bytes(keys)
        argv = [gpgv, "--homedir", home, "--status-fd", "1", "--keyring", str(ring)]
        try:
            done = subprocess.run(
                [*argv, str(signature), str(artifact)],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=GPGV_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ArtifactError(f"--signature: gpgv did not finish: {error}") from None
    status = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("[GNUPG:]")]
    valid = [words for words in status if words[:1] == ["VALIDSIG"] and len(words) >= 2]
    if done.returncode != 0 or not valid:
        said = {words[0] for words in status if words}
        why = next((word for word in _WHY if word in said), "no valid signature")
        raise ArtifactError(
            f"--signature {signature}: not a good signature of {artifact} by a key of "
            f"{keyring} (gpgv: {_WHY.get(why, why)})"
        )
    words = valid[0]
    primary = words[10] if len(words) > 10 else words[1]
    return primary if re.fullmatch(r"[0-9A-F]{16,64}", primary) else words[1][:64]


_WHY = {  # the most telling first
    "BADSIG": "bad signature: the file or the signature was changed",
    "NO_PUBKEY": "the signing key is not in the keyring",
    "ERRSIG": "the signature could not be checked",
}


def check_provenance(
    runc: Path,
    sha256: str | None,
    *,
    sha256_file: Path | None = None,
    sha256_name: str | None = None,
    signature: Path | None = None,
    keyring: Path | None = None,
) -> tuple[str, Provenance | None]:
    """The artifact's expected sha256 (given, or from the sha256sum file) and what was checked
    of its origin; the signature first, before anything else is done with the file."""
    if (signature is None) != (keyring is None):
        raise ArtifactError("--signature and --keyring go together")
    if sha256_name is not None and sha256_file is None:
        raise ArtifactError("--sha256-name: only with --sha256-file")
    fingerprint = check_signature(runc, signature, keyring) if signature and keyring else None
    expected = sha256
    name = sha256_name or runc.name
    if sha256_file is not None:
        listed = sha256_from_file(sha256_file, name)
        if sha256 is not None and normalize_sha256(sha256) != listed:
            raise ArtifactError(f"--sha256 differs from the line for {name!r} in {sha256_file}")
        expected = listed
    if expected is None:
        raise ArtifactError("--sha256 or --sha256-file is required")
    if sha256_file is None and signature is None:
        return expected, None
    return expected, Provenance(
        sha256_file=str(sha256_file) if sha256_file else None,
        sha256_name=name if sha256_file else None,
        signature=str(signature) if signature else None,
        keyring=str(keyring) if keyring else None,
        fingerprint=fingerprint,
    )
