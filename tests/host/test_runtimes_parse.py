"""Which runc a host's runtimes execute when Docker's default runtime is not runc: NVIDIA's shim
is followed to the runc it execs (its config.toml read as data), a runtime that wraps nothing
(crun, runsc) means runc is not used by default, unless another configured path runs runc.

Version outputs are real ones (see tests/host/test_runcinfo.py)."""

from __future__ import annotations

import pytest

from orchestrator.diagnose.advisories import load_advisories
from orchestrator.diagnose.audit import HostAudit, audit_host, build_report
from orchestrator.diagnose.audit_views import report_markdown
from orchestrator.diagnose.findings import distribution_of, host_findings
from orchestrator.errors import FactsError
from orchestrator.host.facts import SYSTEMD_DEFAULT_PATH, facts_to_before, parse_facts
from orchestrator.host.procedure import decide, describe, probe_command
from orchestrator.inventory.read import load_inventory
from orchestrator.models import (
    Artifact,
    BeforeRunc,
    HostBefore,
    PlannedHost,
    ProbeResult,
    SshTarget,
    VerifySpec,
    WaveOptions,
)
from orchestrator.plan.planner import build_plan
from orchestrator.plan.render import plan_json, plan_markdown, plan_table
from tests.host.test_facts_parse import (
    DEBIAN_HOST,
    DEBIAN_SHA,
    DEBIAN_VERSION,
    RC93_SHA,
    RC93_VERSION,
    binary,
    output,
    stat,
)
from tests.host.test_runcinfo import CRUN, NVIDIA, RUNSC
from tests.plan.test_plan_stream import ARTIFACT, FLEET40

SHIM = "/usr/bin/nvidia-container-runtime"
SHIM_SHA = "1" * 64
CRUN_SHA = "2" * 64
NVIDIA_DOCKER = (
    '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}},'
    ' "default-runtime": "nvidia"}'
)
CRUN_DOCKER = '{"runtimes": {"crun": {"path": "/usr/bin/crun"}}, "default-runtime": "crun"}'
DOCKERD = (
    "proc 977",
    f"comm=dockerd\nstat={stat(977, 'dockerd', 'S', 1, 2300)}\n"
    "cmdline=/usr/bin/dockerd -H fd://\n"
    f"exe=/usr/bin/dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"
    "version=Docker version 20.10.24+dfsg1, build 297e128\n",
)


def cri_config(binary_name: str) -> tuple[str, str]:
    """The facts section of a containerd config whose CRI runs runc `binary_name`."""
    config = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        f'  BinaryName = "{binary_name}"\n'
    )
    return "file containerd /etc/containerd/config.toml", config


def gpu_node(*extra: tuple[str, str], shim_output: str = NVIDIA) -> str:
    """A GPU node as NVIDIA documents it: the shim is Docker's default runtime; rc93 in
    /usr/local/sbin, Debian's runc in /usr/sbin."""
    return output(
        DOCKERD,
        ("file docker /etc/docker/daemon.json", NVIDIA_DOCKER),
        *extra,
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
        *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        *binary("/usr/bin/crun", CRUN_SHA, CRUN),
        *binary(SHIM, SHIM_SHA, shim_output),
    )


def test_the_shim_is_followed_to_the_runc_it_execs() -> None:
    """No config file: its default ["docker-runc", "runc"], on dockerd's PATH: rc93 first."""
    facts = parse_facts("gpu", gpu_node())
    assert facts.runc is not None and facts.runc.file == "/usr/local/sbin/runc"
    assert facts.runc.version == "1.0.0-rc93"
    assert facts.runc_via == SHIM
    assert facts.runc_source.startswith("runc behind nvidia-container-runtime")
    before = facts_to_before(facts)
    assert (before.runc_path, before.runc_via) == ("/usr/local/sbin/runc", SHIM)
    planned = PlannedHost(name="gpu", domain="a", ssh=SshTarget(address="gpu"), before=before)
    artifact = Artifact(path="/a/runc", sha256=DEBIAN_SHA[::-1], size=10, version="1.1.12")
    assert decide(planned, artifact, facts, None).action == "swap"
    line = describe(decide(planned, artifact, facts, None), artifact, facts, 16384)
    assert f"swap /usr/local/sbin/runc (runc behind {SHIM}, left as it is)" in line


def test_the_shims_config_names_the_runtime() -> None:
    config = '[nvidia-container-runtime]\nruntimes = [\n  "/usr/sbin/runc",\n]\nmode = "auto"\n'
    text = gpu_node(("file nvidia /etc/nvidia-container-runtime/config.toml", config))
    facts = parse_facts("gpu", text)
    assert facts.runc is not None and facts.runc.file == "/usr/sbin/runc"
    assert facts.runc_via == SHIM


def test_a_shim_wrapping_crun_uses_no_runc() -> None:
    config = '[nvidia-container-runtime]\nruntimes = ["crun", "runc"]\n'
    facts = parse_facts("gpu", gpu_node(("file nvidia /x/config.toml", config)))
    assert facts.runc is None
    assert facts.runc_unused == f"{SHIM} runs crun: runc not used by default"


def test_a_shim_whose_config_is_not_toml_is_never_guessed() -> None:
    facts = parse_facts("gpu", gpu_node(("file nvidia /x/config.toml", "runtimes = [")))
    assert facts.runc is None and facts.runc_via == SHIM
    assert any("is not valid TOML" in warning for warning in facts.warnings)
    with pytest.raises(FactsError, match="no runc binary found"):
        facts_to_before(facts)


def test_nvidias_old_patched_runc_is_not_swapped() -> None:
    """Before 2019 the shim was a runc fork with the hook built in: it answers as runc."""
    facts = parse_facts("gpu", gpu_node(shim_output=DEBIAN_VERSION))
    assert facts.runc is None
    assert facts.runc_unused is not None and "NVIDIA's patched runc" in facts.runc_unused
    with pytest.raises(FactsError, match="take the GPUs away"):
        facts_to_before(facts)


@pytest.mark.parametrize(("what", "version"), [("crun", CRUN), ("runsc", RUNSC)])
def test_a_default_runtime_that_wraps_nothing_is_held_back(what: str, version: str) -> None:
    path = f"/usr/bin/{what}"
    daemon_json = f'{{"runtimes": {{"{what}": {{"path": "{path}"}}}}, "default-runtime": "{what}"}}'
    text = output(
        DOCKERD,
        ("file docker /etc/docker/daemon.json", daemon_json),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
        *binary(path, CRUN_SHA, version),
    )
    facts = parse_facts("h", text)
    assert facts.runc is None
    assert facts.runc_unused == f"default runtime {what}: runc not used by default"
    with pytest.raises(FactsError, match=f"default runtime {what}: runc not used by default"):
        facts_to_before(facts)
    planned = PlannedHost(name="h", domain="a", ssh=SshTarget(address="h"))
    artifact = Artifact(path="/a/runc", sha256=DEBIAN_SHA, size=10)
    decision = decide(planned, artifact, facts, None)
    assert (decision.action, decision.message) == (
        "noop",
        f"default runtime {what}: runc not used by default; not touched",
    )


def test_crun_by_default_but_runc_for_kubelet() -> None:
    """containerd's CRI BinaryName still runs runc: that one is the host's runc."""
    text = output(
        DOCKERD,
        ("file docker /etc/docker/daemon.json", CRUN_DOCKER),
        cri_config("/usr/local/sbin/runc"),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
        *binary("/usr/bin/crun", CRUN_SHA, CRUN),
    )
    facts = parse_facts("h", text)
    assert facts.runc is not None and facts.runc.file == "/usr/local/sbin/runc"
    assert facts.runc_unused is None
    assert facts.runc_source == (
        "containerd CRI BinaryName (default runtime crun: runc not used by default)"
    )


def test_docker_18_06_runs_docker_runc() -> None:
    old = (DOCKERD[0], DOCKERD[1].replace("20.10.24+dfsg1", "18.06.3-ce"))
    text = output(
        old,
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/bin/docker-runc", RC93_SHA, RC93_VERSION),
        *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
    )
    facts = parse_facts("old", text)
    assert facts.runc is not None and facts.runc.file == "/usr/bin/docker-runc"


def test_audit_names_the_runc_behind_the_shim_and_its_findings() -> None:
    advisories = load_advisories()
    audit = audit_host(parse_facts("gpu", gpu_node()), "zone-a", advisories)
    assert (audit.runc_path, audit.runc_version, audit.runc_via) == (
        "/usr/local/sbin/runc",
        "1.0.0-rc93",
        SHIM,
    )
    assert "runc-rc93-pipe-hang" in [finding.id for finding in audit.findings]
    report = build_report({"gpu": parse_facts("gpu", gpu_node())}, {"gpu": "a"}, advisories)
    assert f"(behind `{SHIM}`, which is not runc and is never swapped)" in report_markdown(report)


def test_audit_says_runc_is_not_used_by_default() -> None:
    text = output(
        DOCKERD,
        ("file docker /etc/docker/daemon.json", CRUN_DOCKER),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
        *binary("/usr/bin/crun", CRUN_SHA, CRUN),
    )
    findings = host_findings(parse_facts("h", text), load_advisories())
    assert [(f.id, f.severity) for f in findings if f.id.startswith("runc-")] == [
        ("runc-not-used", "low")
    ]
    assert findings[0].detail.startswith("default runtime crun: runc not used by default")


def test_the_plan_says_runc_behind_the_shim() -> None:
    inventory = load_inventory([FLEET40])
    first = next(iter(inventory.hosts))
    before = {first: facts_to_before(parse_facts(first, gpu_node()))}
    plan = build_plan(inventory, ARTIFACT, WaveOptions(), before)
    expected = f"/usr/local/sbin/runc (runc behind nvidia-container-runtime `{SHIM}`"
    assert expected in plan_markdown(plan)
    assert expected in plan_table(plan, width=300)
    assert plan.hosts[0].before is not None and plan.hosts[0].before.runc_via == SHIM
    plain = build_plan(inventory, ARTIFACT, WaveOptions())
    assert b"runc_via" not in plan_json(plain)  # absent unless there is a shim: hashes unchanged


def test_audit_reports_kubelets_runc_beside_dockers() -> None:
    """Docker runs a fixed runc, containerd CRI's BinaryName rc93: the hang is found there."""
    text = output(
        DOCKERD,
        cri_config("/usr/local/bin/runc"),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION),
    )
    facts = parse_facts("k8s", text)
    assert facts.shadowed == []  # kubelet's runc is executed, not shadowed
    audit = audit_host(facts, "a", load_advisories())
    (hang,) = [finding for finding in audit.findings if finding.id == "runc-rc93-pipe-hang"]
    assert hang.detail.startswith("also /usr/local/bin/runc (containerd CRI BinaryName): ")
    assert audit.also_runc == [
        "/usr/local/bin/runc 1.0.0-rc93 (commit 12644e614e25) (containerd CRI BinaryName)"
    ]


def kubelet_rc93() -> str:
    """Docker's runc fixed (Debian's 1.1.5), containerd CRI's BinaryName rc93: two files."""
    containerd = (
        "proc 961",
        f"comm=containerd\nstat={stat(961, 'containerd', 'S', 1, 2200)}\n"
        f"cmdline=/usr/bin/containerd\nexe=/usr/bin/containerd\npath={SYSTEMD_DEFAULT_PATH}\n",
    )
    return output(
        containerd,
        DOCKERD,
        cri_config("/usr/local/bin/runc"),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION),
    )


def test_audit_probe_of_dockers_runc_does_not_decide_kubelets() -> None:
    """`audit --probe`: Docker's runc passing the probe clears the hang for that file only;
    kubelet's rc93 is decided by its own probe, else by its version."""
    facts = parse_facts("k8s", kubelet_rc93())
    passed = ProbeResult(outcome="passed", method="docker", seconds=0.4)
    hung = ProbeResult(outcome="hung", method="containerd", seconds=10, detail="anon_pipe_write")

    def hang(audit: HostAudit) -> str | None:
        found = [f.detail for f in audit.findings if f.id == "runc-rc93-pipe-hang"]
        return found[0] if found else None

    only_docker = audit_host(facts, "a", load_advisories(), probe=passed)
    detail = hang(only_docker)
    assert detail is not None and detail.startswith("also /usr/local/bin/runc (containerd CRI")
    assert "decided by the version alone" in detail
    kubelet = {"/usr/local/bin/runc": hung}
    both = audit_host(facts, "a", load_advisories(), probe=passed, also_probes=kubelet)
    detail = hang(both)
    assert detail is not None and "probe (containerd): hung in anon_pipe_write" in detail
    assert both.also_probes == kubelet
    assert "/usr/local/bin/runc: probe (containerd): hung" in report_markdown(
        build_report(
            {"k8s": facts},
            {"k8s": "a"},
            load_advisories(),
            probes={"k8s": passed},
            also_probes={"k8s": kubelet},
        )
    )
    fixed = {"/usr/local/bin/runc": passed}
    clear = audit_host(facts, "a", load_advisories(), probe=passed, also_probes=fixed)
    assert hang(clear) is None


def test_the_probe_of_kubelets_runc_goes_through_containerd() -> None:
    """Docker's default runtime executes /usr/local/sbin/runc: a probe through docker would
    prove nothing about CRI's file, so that one is probed with containerd's client."""
    facts = parse_facts("k8s", kubelet_rc93())
    spec = VerifySpec(image="busybox", probe_uid=61000)
    docker_one = probe_command(facts, "/usr/local/sbin/runc", spec, run_id="r", holds_lock=False)
    kubelets = probe_command(facts, "/usr/local/bin/runc", spec, run_id="r", holds_lock=False)
    assert (docker_one[1], kubelets[1]) == ("docker", "containerd")
    assert kubelets[0].params == {"target": "/usr/local/bin/runc"}


def test_a_host_is_at_the_target_only_when_every_runc_it_executes_is() -> None:
    inventory = load_inventory([FLEET40])
    first = next(iter(inventory.hosts))
    fixed = HostBefore(runc_path="/usr/local/sbin/runc", runc_sha256=ARTIFACT.sha256)
    kubelets = BeforeRunc(path="/usr/local/bin/runc", sha256=RC93_SHA)
    both = fixed.model_copy(update={"also": [kubelets]})
    for before, action in ((fixed, "noop"), (both, "swap")):
        plan = build_plan(inventory, ARTIFACT, WaveOptions(), {first: before})
        assert plan.hosts[0].action == action


def debian_host(intact: str) -> str:
    """This build machine's capture, with dpkg's verdict on /usr/sbin/runc."""
    line = "package_version=1.1.5+ds1-1+deb12u1\n"
    return DEBIAN_HOST.replace(line, f"{line}package_intact={intact}\n", 1)


def test_a_packaged_path_whose_content_is_not_the_packages() -> None:
    """dpkg's md5sum of /usr/sbin/runc disagrees (rc93 copied over it by hand): audit says so,
    instead of crediting the package's backports to a binary that is not the package's."""
    facts = parse_facts("build", debian_host("0"))
    assert facts.runc is not None and facts.runc.package_intact is False
    assert distribution_of(facts.runc) == "distribution build 1.1.5+ds1-1+deb12u1"
    findings = host_findings(facts, load_advisories())
    (finding,) = [f for f in findings if f.id == "runc-not-package-content"]
    assert finding.severity == "medium" and "checksum of it disagrees" in finding.detail
    intact = parse_facts("build", debian_host("1"))
    assert intact.runc is not None and intact.runc.package_intact is True
    assert distribution_of(intact.runc) == "distribution package runc 1.1.5+ds1-1+deb12u1"
    assert "runc-not-package-content" not in [f.id for f in host_findings(intact, ())]
