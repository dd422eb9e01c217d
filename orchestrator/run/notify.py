"""Webhook notifications (`apply --notify URL`): a JSON POST at the run's start, each wave's
end, every halt, pause and failed host, and the end; a Slack-compatible `text` beside the
structured event. Each webhook has its own thread and queue, so messages reach it in order and
a slow or dead one never holds up the rollout or another webhook; bounded retries and time; a
message that could not be delivered is recorded in the journal (`notify.failed`). A webhook URL
is a secret: only its host name is ever shown or recorded."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import BadInput
from orchestrator.models import Event, Operator, Plan
from orchestrator.util.textsafe import terminal_safe

URL_MAX = 2048
ATTEMPTS = 3  # tries per message
TIMEOUT = 5.0  # seconds per try
BACKOFF = 1.0  # seconds before the second try, doubled before each later one
FLUSH_SECONDS = 15.0  # at the end of the run, how long undelivered messages are waited for
NOTABLE = frozenset(
    {"run.started", "run.resumed", "wave.finished", "run.halted", "run.paused", "run.finished",
     "run.interrupted"}
)  # fmt: skip


@dataclass(frozen=True)
class Webhook:
    url: str = field(repr=False)  # a secret: never shown, never stored

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"


def parse_webhooks(urls: Iterable[str]) -> list[Webhook]:
    """`--notify` values; a bad one is refused without showing it (it may hold a token)."""
    hooks = []
    for number, url in enumerate(urls, 1):
        parts = urlsplit(url)
        printable = url.isascii() and url.isprintable() and " " not in url
        if parts.scheme not in ("http", "https") or not parts.hostname or not printable:
            raise BadInput(
                f"--notify #{number}: not an http(s) URL of printable characters (not shown: "
                "a webhook URL is a secret)"
            )
        if len(url) > URL_MAX:
            raise BadInput(f"--notify #{number}: longer than {URL_MAX} characters")
        hooks.append(Webhook(url))
    return hooks


def slack_safe(text: str) -> str:
    """Text Slack shows as it is: no control characters, and `&`, `<`, `>` escaped (so a host's
    message cannot mention @channel or make a link)."""
    text = terminal_safe(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def notification_text(event: Event, plan: Plan, run_id: str) -> str | None:
    """The message's `text`, or None for an event nobody is told about."""
    said = event.message or ""
    if event.type == "host.finished" and event.status in ("failed", "unreachable"):
        line = f"host {event.host} {event.status}: {said}"
    elif event.type in ("run.started", "run.resumed"):
        who = f" by {event.operator.describe()}" if event.operator else ""
        verb = "started" if event.type == "run.started" else "resumed"
        line = f"{verb}{who}: {len(plan.hosts)} hosts in {len(plan.waves)} waves"
        if plan.options.reason:
            line += f"; reason: {plan.options.reason}"
    elif event.type == "wave.finished":
        line = f"wave {event.wave} of {len(plan.waves)} finished: {said}"
    elif event.type == "run.finished":
        line = f"finished: {event.status}"
    elif event.type in NOTABLE:
        line = f"{event.type.removeprefix('run.')}: {said}".rstrip(": ")
    else:
        return None
    ticket = f" ({plan.options.ticket})" if plan.options.ticket else ""
    return slack_safe(f"runc-rollout {run_id}{ticket}: {line}")


def post_json(url: str, body: bytes, timeout: float) -> None:
    """POST `body`; any answer but 2xx, and any redirect, is an error."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=timeout) as answer:
        answer.read(64 * 1024)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is refused: the message (and the URL's secret) stays put."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def failure_text(error: BaseException) -> str:
    """Why a POST failed, without the URL or anything the server said beyond its status."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return type(reason).__name__ if isinstance(reason, BaseException) else "unreachable"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


Post = Callable[[str, bytes, float], None]


@dataclass
class Delivery:
    """How hard to try: per message `attempts` tries of `timeout` seconds, `backoff` between."""

    post: Post = post_json
    attempts: int = ATTEMPTS
    timeout: float = TIMEOUT
    backoff: float = BACKOFF
    flush_seconds: float = FLUSH_SECONDS
    sleep: Callable[[float], None] = time.sleep


_DONE = object()


class Notifier:
    """Feed it the run's events (`notifier(event)`); `close()` at the end of the run."""

    def __init__(
        self,
        webhooks: list[Webhook],
        plan: Plan,
        run_id: str,
        *,
        operator: Operator | None,
        on_failure: Callable[[str], object],  # records why a message was not delivered
        delivery: Delivery | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.operator = operator
        self.on_failure = on_failure
        self.delivery = delivery or Delivery()
        self._queues: list[tuple[Webhook, queue.SimpleQueue[object]]] = []
        self._threads: list[threading.Thread] = []
        for hook in webhooks:
            inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._deliver, args=(hook, inbox), name=f"notify {hook.host}", daemon=True
            )
            thread.start()
            self._queues.append((hook, inbox))
            self._threads.append(thread)

    def __call__(self, event: Event) -> None:
        text = notification_text(event, self.plan, self.run_id)
        if text is None:
            return
        body = {
            "text": text,
            "run_id": self.run_id,
            "plan_id": self.plan.plan_id,
            "ticket": self.plan.options.ticket,
            "operator": None if self.operator is None else self.operator.model_dump(),
            "event": event.model_dump(mode="json", exclude_none=True),
        }
        data = json.dumps(body).encode()
        for _, inbox in self._queues:
            inbox.put(data)

    def close(self) -> None:
        """Let each webhook's queue drain for at most `flush_seconds`; what is left is given
        up (and recorded)."""
        for _, inbox in self._queues:
            inbox.put(_DONE)
        deadline = time.monotonic() + self.delivery.flush_seconds
        for (hook, inbox), thread in zip(self._queues, self._threads, strict=True):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                left = inbox.qsize()
                self.on_failure(
                    f"webhook {hook.host}: still sending after {self.delivery.flush_seconds:g}s "
                    f"at the end of the run; {left} more notifications given up"
                )

    def _deliver(self, hook: Webhook, inbox: queue.SimpleQueue[object]) -> None:
        while (item := inbox.get()) is not _DONE:
            assert isinstance(item, bytes)
            self._send(hook, item)

    def _send(self, hook: Webhook, data: bytes) -> None:
        delivery = self.delivery
        why = "not tried"
        for attempt in range(delivery.attempts):
            if attempt:
                delivery.sleep(delivery.backoff * 2 ** (attempt - 1))
            try:
                delivery.post(hook.url, data, delivery.timeout)
                return
            except Exception as error:
                why = failure_text(error)
        event = json.loads(data)["event"]["type"]
        self.on_failure(
            f"webhook {hook.host}: {event} not delivered after {delivery.attempts} tries: {why}"
        )
