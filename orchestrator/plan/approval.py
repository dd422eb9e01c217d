"""Binding `apply` to the reviewers' approval of one plan.

`plan_hash` proves a plan's body is what its hash says, but anyone can recompute it: a plan
edited and re-sealed is as valid as the reviewed one. Two things bind a run to the approval:

- `--expect-hash HASH`: the plan_hash a merge request recorded; any other plan is refused.
- SSH signatures (`ssh-keygen -Y sign`, namespace `runc-rollout-plan`) of the line
  `runc-rollout plan PLAN_ID sha256 PLAN_HASH`, kept one after another in `PLAN.sig`, checked
  against an `allowed_signers` file as git uses it. `--required-signatures N` distinct
  keys must have signed (1 by default once `--allowed-signers` is given); a key listed under
  several principals counts once.

Pure except for running `ssh-keygen`; nothing here touches a host.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from pathlib import Path

from orchestrator.errors import BadInput, PlanError
from orchestrator.models import ApprovalPolicy, Plan
from orchestrator.util.fsutil import MiB, read_input

NAMESPACE = "runc-rollout-plan"
SIGNATURES_LIMIT = 4 * MiB
_ARMOR = re.compile(
    r"-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+?-----END SSH SIGNATURE-----\n?"
)
_KEYGEN_TIMEOUT = 30


def approval_policy(
    expect_hash: str | None, allowed_signers: Path | None, required_signatures: int | None
) -> ApprovalPolicy:
    """The policy from the command line: signatures are required once allowed signers are
    given (one, unless told how many)."""
    if expect_hash is not None:
        expect_hash = expect_hash.strip().lower().removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", expect_hash):
            raise BadInput("--expect-hash: not a sha256 (64 hexadecimal digits)")
    if required_signatures is None:
        required_signatures = 1 if allowed_signers is not None else 0
    return ApprovalPolicy(
        expect_hash=expect_hash,
        allowed_signers=None if allowed_signers is None else str(allowed_signers),
        required_signatures=required_signatures,
    )


def append_signature(path: Path, signature: str) -> None:
    """Add `signature` to the signatures file `path` (never through a symbolic link)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        raise BadInput(f"--signatures: cannot write {path}: {error.strerror or error}") from None
    try:
        os.write(fd, signature.encode())
    finally:
        os.close(fd)


def approval_message(plan: Plan) -> bytes:
    """What a reviewer signs: the plan's id and the hash of its whole body."""
    return f"runc-rollout plan {plan.plan_id} sha256 {plan.plan_hash}\n".encode()


def default_signatures(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.name + ".sig")


def sign_plan(plan: Plan, key: Path) -> str:
    """An armored SSH signature of `plan` by `key` (a private key file, or its .pub with an
    agent holding the key)."""
    done = _keygen(["-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE], approval_message(plan))
    if done.returncode != 0 or not _ARMOR.fullmatch(done.stdout.decode(errors="replace")):
        raise BadInput(f"--key: signing with {key} failed: {_last_line(done.stderr)}")
    return done.stdout.decode()


def read_signatures(path: Path) -> list[str]:
    """The armored signatures of a signatures file, in order."""
    text = read_input(path, SIGNATURES_LIMIT, "signatures file").decode("ascii", errors="replace")
    return _ARMOR.findall(text)


def signers(plan: Plan, signatures: list[str], allowed_signers: Path) -> list[str]:
    """One principal of `allowed_signers` per distinct key whose signature of `plan`
    verifies: a key listed under several names (`alice,bob KEY`) is one signer."""
    read_input(allowed_signers, SIGNATURES_LIMIT, "allowed signers file")  # exists, bounded
    found: list[str] = []
    keys: set[bytes] = set()
    with tempfile.TemporaryDirectory(prefix="runc-rollout-sig-") as directory:
        for index, signature in enumerate(signatures):
            key = signing_key(signature)
            if key is None or key in keys:
                continue
            path = Path(directory) / f"{index}.sig"
            path.write_text(signature)
            principals = _keygen(
                ["-Y", "find-principals", "-s", str(path), "-f", str(allowed_signers)], b""
            )
            for principal in principals.stdout.decode(errors="replace").splitlines():
                if principal in found or not principal.strip():
                    continue
                verify = [
                    "-Y", "verify", "-f", str(allowed_signers), "-I", principal,
                    "-n", NAMESPACE, "-s", str(path),
                ]  # fmt: skip
                if _keygen(verify, approval_message(plan)).returncode == 0:
                    found.append(principal)
                    keys.add(key)
                    break
    return found


def signing_key(signature: str) -> bytes | None:
    """The public key blob an armored SSH signature names (the SSHSIG format: magic, version,
    then the key as a length-prefixed string); None if it is not one."""
    body = "".join(line for line in signature.splitlines() if not line.startswith("-----"))
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError:
        return None
    if not blob.startswith(b"SSHSIG") or len(blob) < 14:
        return None
    length = int.from_bytes(blob[10:14], "big")
    key = blob[14 : 14 + length]
    return key if len(key) == length and key else None


def check_approval(plan: Plan, policy: ApprovalPolicy, signatures: Path | None) -> list[str]:
    """Refuse `plan` unless it is the one approved; the principals that signed it."""
    if policy.expect_hash is not None and policy.expect_hash != plan.plan_hash:
        raise PlanError(
            f"plan_hash is {plan.plan_hash}, not the approved {policy.expect_hash} "
            "(--expect-hash): this is not the reviewed plan"
        )
    if policy.required_signatures == 0:
        return []
    if policy.allowed_signers is None:
        raise PlanError(
            f"{policy.required_signatures} signatures are required but no allowed signers file "
            "was given (--allowed-signers)"
        )
    if signatures is None or not signatures.exists():
        raise PlanError(f"{signatures}: no signatures of {plan.plan_id}; the plan is not approved")
    found = signers(plan, read_signatures(signatures), Path(policy.allowed_signers))
    if len(found) < policy.required_signatures:
        who = ", ".join(found) or "nobody"
        raise PlanError(
            f"{signatures}: {plan.plan_id} (sha256 {plan.plan_hash[:12]}) is signed by {who} in "
            f"{policy.allowed_signers}; {policy.required_signatures} required: not approved"
        )
    return found


def _keygen(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=stdin,
            capture_output=True,
            timeout=_KEYGEN_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise BadInput("ssh-keygen is not installed: plan signatures cannot be checked") from None
    except subprocess.TimeoutExpired:
        raise BadInput("ssh-keygen did not answer within 30 s (a key passphrase?)") from None


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1][:200] if lines else "no error output"


def written_plan_hash(path: Path) -> str | None:
    """The `plan_hash` of the plan file at `path` (from its first bytes), or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).decode(errors="replace")
    except OSError:
        return None
    found = re.search(r'"plan_hash": "([0-9a-f]{64})"', head)
    return found.group(1) if found else None


def set_aside_stale_signatures(output: Path, replaced: str | None, plan_hash: str) -> Path | None:
    """A plan written over another one with a different hash: the signatures beside it are
    the old plan's and approve nothing of the new one. They are renamed; the new name."""
    signatures = default_signatures(output)
    if replaced == plan_hash or not signatures.is_file() or signatures.is_symlink():
        return None
    stale = signatures.with_name(signatures.name + ".stale")
    os.replace(signatures, stale)
    return stale
