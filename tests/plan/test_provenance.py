"""The artifact's origin: upstream's sha256sum lines, and a detached signature made here with a
throwaway key through gpg and checked through gpgv."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ArtifactError, BadInput, ExitCode
from orchestrator.plan.provenance import check_provenance, check_signature, sha256_from_file

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"

needs_gpg = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgv") is None, reason="gpg or gpgv missing"
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release directory as upstream publishes one: binaries and runc.sha256sum."""
    folder = tmp_path / "release"
    folder.mkdir()
    for arch in ("amd64", "arm64", "ppc64le"):
        binary = folder / f"runc.{arch}"
        binary.write_text(f"#!/bin/sh\necho 'runc version 1.1.12 {arch}'\n")
        binary.chmod(0o755)
    # sha256sum's own output, as upstream's release script makes it.
    sums = subprocess.run(
        ["sha256sum", "runc.amd64", "runc.arm64", "runc.ppc64le"],
        cwd=folder, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (folder / "runc.sha256sum").write_text(sums)
    return folder


def test_the_line_for_the_artifacts_name_is_picked(release: Path) -> None:
    sums = release / "runc.sha256sum"
    assert sha256_from_file(sums, "runc.amd64") == digest(release / "runc.amd64")
    assert sha256_from_file(sums, "runc.arm64") == digest(release / "runc.arm64")
    with pytest.raises(ArtifactError, match=r"no line for 'runc' \(runc.amd64, runc.arm64"):
        sha256_from_file(sums, "runc")


def test_binary_mode_and_paths_in_lines(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'a' * 64} *./dist/runc.amd64\n# comment\n{'B' * 64}  other\n")
    assert sha256_from_file(sums, "runc.amd64") == "a" * 64
    sums.write_text(f"{'a' * 64}  runc.amd64\n{'b' * 64}  x/runc.amd64\n")
    with pytest.raises(ArtifactError, match="different checksums"):
        sha256_from_file(sums, "runc.amd64")


def test_a_sha256_file_that_is_a_link_is_not_followed(release: Path, tmp_path: Path) -> None:
    link = tmp_path / "sums-link"
    link.symlink_to(release / "runc.sha256sum")
    with pytest.raises(BadInput, match="symbolic link, not followed"):
        sha256_from_file(link, "runc.amd64")


def test_given_and_listed_checksums_must_agree(release: Path) -> None:
    runc, sums = release / "runc.amd64", release / "runc.sha256sum"
    expected, provenance = check_provenance(runc, None, sha256_file=sums)
    assert expected == digest(runc)
    assert provenance is not None and provenance.sha256_name == "runc.amd64"
    assert check_provenance(runc, f"sha256:{expected.upper()}", sha256_file=sums)[0] == expected
    with pytest.raises(ArtifactError, match="--sha256 differs"):
        check_provenance(runc, "0" * 64, sha256_file=sums)
    with pytest.raises(ArtifactError, match="--sha256 or --sha256-file is required"):
        check_provenance(runc, None)
    assert check_provenance(runc, expected) == (expected, None)
    renamed = check_provenance(runc, None, sha256_file=sums, sha256_name="runc.arm64")[0]
    assert renamed == digest(release / "runc.arm64")  # the plan then refuses the mismatch


@dataclass
class Signer:
    home: Path
    fingerprint: str

    def gpg(self, *args: str) -> bytes:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        return subprocess.run(
            ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
             *args], env=env, capture_output=True, check=True,
        ).stdout  # fmt: skip

    def sign(self, path: Path) -> Path:
        signature = path.with_name(path.name + ".asc")
        self.gpg("--armor", "--detach-sign", "-o", str(signature), str(path))
        return signature

    def keyring(self, path: Path) -> Path:
        path.write_bytes(self.gpg("--armor", "--export"))
        return path


def make_signer(home: Path, name: str) -> Signer:
    home.mkdir(mode=0o700)
    signer = Signer(home, "")
    signer.gpg("--quick-gen-key", f"{name} <{name}@example.org>", "ed25519", "sign", "never")
    listing = signer.gpg("--with-colons", "--list-keys").decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:4] == "fpr:")
    return Signer(home, fingerprint)


@pytest.fixture(autouse=True)
def no_agent_left(tmp_path: Path) -> Iterator[None]:
    """gpg starts an agent per home directory: the test's are stopped when it ends."""
    yield
    for ring in tmp_path.glob("*/pubring.kbx"):
        subprocess.run(
            ["gpgconf", "--homedir", str(ring.parent), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "gnupg", "release")


@needs_gpg
def test_a_good_signature_gives_the_keys_fingerprint(
    signer: Signer, release: Path, tmp_path: Path
) -> None:
    runc = release / "runc.amd64"
    signature, keyring = signer.sign(runc), signer.keyring(tmp_path / "runc.keyring")
    assert keyring.read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert check_signature(runc, signature, keyring) == signer.fingerprint
    stranger = make_signer(tmp_path / "other", "stranger")
    with pytest.raises(ArtifactError, match="the signing key is not in the keyring"):
        check_signature(runc, signature, stranger.keyring(tmp_path / "other.keyring"))
    both = tmp_path / "both.keyring"  # upstream's keyring: one armored block per maintainer
    both.write_bytes((tmp_path / "other.keyring").read_bytes() + keyring.read_bytes())
    assert check_signature(runc, signature, both) == signer.fingerprint
    runc.write_text(runc.read_text() + "# changed\n")
    with pytest.raises(ArtifactError, match="bad signature"):
        check_signature(runc, signature, keyring)


@needs_gpg
def test_plan_records_and_shows_the_provenance(
    signer: Signer, release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runc = release / "runc.amd64"
    signature, keyring = signer.sign(runc), signer.keyring(tmp_path / "runc.keyring")
    out = tmp_path / "plan.json"
    args = ["plan", "-i", str(FLEET40), "--runc", str(runc), "-o", str(out),
            "--sha256-file", str(release / "runc.sha256sum"), "--signature", str(signature),
            "--keyring", str(keyring), "--format", "markdown"]  # fmt: skip
    assert main(args) == ExitCode.OK
    review = capsys.readouterr().out
    top = review[: review.index("## Summary")]
    assert f"sha256 from `{release / 'runc.sha256sum'}`, line `runc.amd64`" in top
    assert f"good OpenPGP signature `{signature}` by key `{signer.fingerprint}`" in top
    body = json.loads(out.read_text())
    assert body["artifact"]["sha256"] == digest(runc)
    assert body["artifact"]["provenance"]["fingerprint"] == signer.fingerprint
    out.unlink()
    runc.write_text(runc.read_text() + "# changed\n")
    assert main(args) == ExitCode.BAD_INPUT  # the signature first: no plan
    assert "bad signature" in capsys.readouterr().err and not out.exists()
    assert main([*args[:-6], "--signature", str(signature)]) == ExitCode.BAD_INPUT
    assert "--signature and --keyring go together" in capsys.readouterr().err
