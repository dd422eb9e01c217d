"""Webhook notifications: a real HTTP server on 127.0.0.1 receives them in order while the engine
runs a scripted rollout; a webhook that is down, or that never answers, changes nothing in the
outcome and holds nothing up, and is recorded in the journal by its host name only."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import BadInput, ExitCode
from orchestrator.models import Event, Operator
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import EVENTS_FILE, STATE_FILE
from orchestrator.run.notify import (
    Delivery,
    Notifier,
    notification_text,
    parse_webhooks,
    post_json,
)
from tests.run.test_engine import (
    Run,
    apply,
    make_plan,
    no_fsync,  # noqa: F401 (autouse: the journal's fsyncs skipped)
    settled_failure,
)

SECRET = "/services/T0001/B0002/XXXXsecretXXXX"
ALICE = Operator(user="alice", host="ctl-1")


class Receiver(BaseHTTPRequestHandler):
    """Keeps each POST's JSON; answers with the server's `status` (or never, when `hang`)."""

    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, Webhook)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.received.append((self.path, body))
        if server.hang:
            time.sleep(5)
            return
        self.send_response(server.status)
        if server.status in (301, 302):
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class Webhook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200, hang: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Receiver)
        self.status = status
        self.hang = hang
        self.received: list[tuple[str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{SECRET}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    yield from serving(Webhook())


def serving(server: Webhook) -> Iterator[Webhook]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET}"


FAST = Delivery(attempts=2, timeout=0.5, backoff=0.01, flush_seconds=3)


def notified_run(run: Run, urls: list[str], delivery: Delivery = FAST) -> ExitCode:
    notifier = Notifier(
        parse_webhooks(urls),
        run.journal.plan,
        run.journal.run_id,
        operator=ALICE,
        on_failure=lambda message: run.journal.record("notify.failed", message=message),
        delivery=delivery,
    )

    def both(event: Event) -> None:
        run.emitted.append(event)
        notifier(event)

    env = ApplyEnv(clock=run.clock, sleep=run.clock.sleep, on_event=both, operator=ALICE)
    try:
        return Rollout(run.journal, run.backend, env=env).run()
    finally:
        notifier.close()


def test_a_local_webhook_receives_every_notification_in_order_and_a_dead_one_changes_nothing(
    tmp_path: Path, webhook: Webhook
) -> None:
    plan = make_plan(4, "1,100%", max_failures="1")
    plain = apply(tmp_path / "plain", plan, {"h3": settled_failure("probe hung")})
    assert notified_run(plain, []) == ExitCode.HOST_FAILED
    run = apply(tmp_path / "notified", plan, {"h3": settled_failure("probe hung")})
    assert notified_run(run, [webhook.url, dead_url()]) == ExitCode.HOST_FAILED
    assert run.journal.state.hosts == plain.journal.state.hosts  # the same outcome
    bodies = [body for _, body in webhook.received]
    assert {path for path, _ in webhook.received} == {SECRET}
    events = [body["event"] for body in bodies]
    assert [(e["type"], e.get("wave"), e.get("host")) for e in events] == [
        ("run.started", None, None),
        ("wave.finished", 0, None),
        ("host.finished", None, "h3"),
        ("wave.finished", 1, None),
        ("run.finished", None, None),
    ]
    texts = [body["text"] for body in bodies]
    assert texts[0] == (
        f"runc-rollout {run.journal.run_id}: started by alice@ctl-1: 4 hosts in 2 waves"
    )
    assert texts[2] == f"runc-rollout {run.journal.run_id}: host h3 failed: probe hung"
    assert texts[-1] == f"runc-rollout {run.journal.run_id}: finished: failed"
    assert bodies[1]["event"]["counts"] == {"done": 1}
    assert bodies[0]["operator"] == {"user": "alice", "host": "ctl-1", "signers": []}
    failed = [e for e in run.events if e.type == "notify.failed"]
    assert len(failed) == 5  # each message to the dead webhook, recorded
    assert failed[0].message == (
        "webhook 127.0.0.1: run.started not delivered after 2 tries: Connection refused"
    )
    for name in (EVENTS_FILE, STATE_FILE):
        assert "secret" not in (run.journal.run_dir / name).read_text()


def test_a_webhook_that_never_answers_holds_nothing_up(tmp_path: Path) -> None:
    for hanging in serving(Webhook(hang=True)):
        run = apply(tmp_path, make_plan(3))
        delivery = Delivery(attempts=2, timeout=0.3, backoff=0.01, flush_seconds=0.5)
        started = time.monotonic()
        assert notified_run(run, [hanging.url], delivery) == ExitCode.OK
        assert time.monotonic() - started < 3  # not 4 messages x 2 tries x 0.3 s, nor 5 s each
        assert run.journal.state.status == "completed"
        gave_up = [e.message for e in run.events if e.type == "notify.failed"]
        assert gave_up[-1] is not None and "more notifications given up" in gave_up[-1]
        assert all("secret" not in str(message) for message in gave_up)


@pytest.mark.parametrize(("status", "said"), [(500, "HTTP 500"), (302, "HTTP 302")])
def test_an_error_or_a_redirect_is_a_failure_without_the_url(status: int, said: str) -> None:
    for server in serving(Webhook(status=status)):
        with pytest.raises(Exception) as caught:
            post_json(server.url, b"{}", 2)
        from orchestrator.run.notify import failure_text

        assert failure_text(caught.value) == said
        assert len(server.received) == 1  # the redirect was not followed


def test_text_from_hosts_cannot_mention_the_channel_or_make_links() -> None:
    plan = make_plan(2)
    event = Event(
        seq=1, time=0, type="host.finished", host="h1", status="failed",
        message="<!channel> see <http://evil|here> & \x1b[2J",
    )  # fmt: skip
    text = notification_text(event, plan, "run-1")
    assert text == (
        "runc-rollout run-1: host h1 failed: &lt;!channel&gt; see &lt;http://evil|here&gt; "
        "&amp; \\x1b[2J"
    )
    assert notification_text(Event(seq=2, time=0, type="host.phase", host="h1"), plan, "r") is None


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "https://", "https://hooks.example/a b", "hooks.example"]
)
def test_a_bad_webhook_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_webhooks(["https://ok.example/T/t0ken", url])
    assert str(caught.value).startswith("--notify #2: not an http(s) URL")
    assert url not in str(caught.value) and "t0ken" not in str(caught.value)
    (hook,) = parse_webhooks(["https://hooks.slack.com/services/T/B/secret"])
    assert hook.host == "hooks.slack.com" and "secret" not in repr(hook)
