"""Who may say what on NATS: the permissions of kaizend's four roles, from the configuration.

- *service*: publish events, ask the inference gateway, read (not write) the routing bucket.
- *worker*: take jobs from the work queue, report progress and results.
- *operator*: the daemon's admin requests (status, sql, train, promote, rollback, drift ...).
- *daemon*: everything the daemon and the gateway need, on kaizend's subjects and streams.

`role_permissions` derives every subject from the configured prefixes, stream names and
consumers, so a renamed subject stays covered; the embedded nats-server's configuration,
``kaizend security permissions`` (for an external cluster) and ``kaizend security check``
all use it. JetStream is reached through its API subjects (``$JS.API.<verb>.<stream>...``),
a key-value bucket is the stream ``KV_<bucket>`` with subjects ``$KV.<bucket>.<key>``,
acknowledgements go to ``$JS.ACK.<stream>.<consumer>...`` and replies to inboxes.

Replies: every role reads its replies on an inbox (``_INBOX.>``); the operator's replies
(SQL results) arrive on the private prefix ``_INBOX.kaizend.operator``, which the other
roles are denied, and the daemon answers requests through ``allow_responses`` instead of a
publish permission on inboxes.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Literal

from kaizend.core.config import ROLES, Role, Settings
from kaizend.handlers.jobs import RESULTS_CONSUMER, result_subject, train_subject

JS_API = "$JS.API"
PRIVATE_INBOXES = "_INBOX.kaizend"
"""Prefix of the inboxes only their own role may read."""


def inbox_prefix(role: Role) -> str:
    """The inbox prefix a role's connection uses (nats-py's ``inbox_prefix``)."""
    return f"{PRIVATE_INBOXES}.operator" if role == "operator" else "_INBOX"


@dataclass(frozen=True)
class Permissions:
    """One role's NATS permissions (subjects with NATS wildcards ``*`` and ``>``)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    def to_nats(self) -> dict[str, object]:
        """The ``permissions`` block of a nats-server user."""
        subscribe: dict[str, list[str]] = {"allow": list(self.subscribe)}
        if self.subscribe_deny:
            subscribe["deny"] = list(self.subscribe_deny)
        block: dict[str, object] = {
            "publish": {"allow": list(self.publish)},
            "subscribe": subscribe,
        }
        if self.allow_responses:
            block["allow_responses"] = True
        return block

    def allows(self, action: Literal["publish", "subscribe"], subject: str) -> bool:
        """Whether these permissions let ``action`` on the literal ``subject`` through."""
        if action == "publish":
            return any(subject_matches(pattern, subject) for pattern in self.publish)
        return any(subject_matches(p, subject) for p in self.subscribe) and not any(
            subject_matches(p, subject) for p in self.subscribe_deny
        )


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _kv_reader(bucket: str) -> tuple[str, ...]:
    """Open, read and watch a key-value bucket (no writes): what a producer needs."""
    stream = f"KV_{bucket}"
    return (
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}",  # a watch: an ordered, ephemeral consumer
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.DELETE.{stream}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.>",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"$JS.FC.{stream}.>",  # flow control of the watch
    )


def _stream_owner(stream: str) -> tuple[str, ...]:
    """Create, update, read and consume one stream (not delete or purge it)."""
    return (
        f"{JS_API}.STREAM.CREATE.{stream}",
        f"{JS_API}.STREAM.UPDATE.{stream}",
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.CONSUMER.*.{stream}",
        f"{JS_API}.CONSUMER.*.{stream}.>",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.>",
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


def role_permissions(settings: Settings) -> dict[Role, Permissions]:
    """Every role's permissions for this configuration."""
    events = f"{settings.stream.subject_prefix}.>"
    infer = f"{settings.gateway.subject_prefix}.>"
    admin = f"{settings.admin.subject_prefix}.>"
    training = settings.training
    status = training.status_subject
    jobs, workers = training.stream, training.worker_consumer
    inboxes = "_INBOX.>"
    bucket = settings.routing.bucket
    service = Permissions(
        publish=(events, infer, *_kv_reader(bucket)),
        subscribe=(inboxes,),
        subscribe_deny=(f"{PRIVATE_INBOXES}.>",),
        notes=("publish events, ask the gateway, read and watch the routing bucket",),
    )
    worker = Permissions(
        publish=(
            result_subject(training),
            status,
            f"{status}.>",
            f"{JS_API}.STREAM.INFO.{jobs}",
            f"{JS_API}.CONSUMER.INFO.{jobs}.{workers}",
            # The filtered form only: the subject names the filter, so a worker cannot make
            # the consumer read the results.
            f"{JS_API}.CONSUMER.CREATE.{jobs}.{workers}.{train_subject(training)}",
            f"{JS_API}.CONSUMER.MSG.NEXT.{jobs}.{workers}",
            f"$JS.ACK.{jobs}.{workers}.>",
        ),
        subscribe=(inboxes,),
        subscribe_deny=(f"{PRIVATE_INBOXES}.>",),
        notes=("take jobs from the shared consumer, report progress and results",),
    )
    operator = Permissions(
        publish=(admin,),
        subscribe=(f"{inbox_prefix('operator')}.>",),
        notes=("the daemon's admin requests (status, sql, train, promote, rollback, drift)",),
    )
    daemon = Permissions(
        publish=(
            events,
            f"{training.subject_prefix}.>",
            status,
            f"{status}.>",
            f"$KV.{bucket}.>",
            f"{JS_API}.INFO",
            f"{JS_API}.STREAM.NAMES",
            *_stream_owner(settings.stream.name),
            *_stream_owner(jobs),
            *_stream_owner(f"KV_{bucket}"),
        ),
        subscribe=(
            infer,
            admin,
            status,
            f"{status}.>",
            inboxes,
            "$SRV.>",  # the gateway's service discovery (PING, INFO, STATS)
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{settings.stream.name}.>",
        ),
        allow_responses=True,
        notes=("the daemon and `kaizend gateway`: ingest, jobs, routing, admin, inference",),
    )
    return {"service": service, "worker": worker, "operator": operator, "daemon": daemon}


def user_name(role: Role) -> str:
    """The user name of a role on the embedded server (and the suggested one elsewhere)."""
    return f"kaizend-{role}"


def nats_users_config(
    settings: Settings, passwords: dict[Role, str] | None = None, roles: tuple[Role, ...] = ROLES
) -> str:
    """An ``authorization { users = [...] }`` block for nats-server; without ``passwords``
    each password is a placeholder to replace (a bcrypt hash from ``nats server passwd``)."""
    permissions = role_permissions(settings)
    users = []
    for role in roles:
        password = passwords[role] if passwords else f"<{role} password or bcrypt hash>"
        user = {
            "user": user_name(role),
            "password": password,
            "permissions": permissions[role].to_nats(),
        }
        # JSON is valid nats-server configuration syntax, and quotes every subject.
        users.append(textwrap.indent(json.dumps(user, indent=2), "    "))
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"


@dataclass(frozen=True)
class Probe:
    """One thing ``kaizend security check`` tries: ``action`` on ``subject``, which stands
    for ``what`` (a probe subject beside the real one where the real one would have an
    effect, matched by the same permission)."""

    what: str
    action: Literal["publish", "subscribe"]
    subject: str


PROBE_TOKEN = "kaizend-security-check"
"""The last token of probe subjects: nothing subscribes to them, no stream accepts them."""


def probes(settings: Settings) -> list[Probe]:
    """What ``kaizend security check`` tries, one per capability that matters."""
    ev = settings.stream.subject_prefix
    infer = settings.gateway.subject_prefix
    admin = settings.admin.subject_prefix
    training = settings.training
    jobs = f"{JS_API}.CONSUMER.INFO.{training.stream}"
    bucket = settings.routing.bucket
    return [
        Probe("publish events", "publish", f"{ev}.query"),
        Probe("ask the inference gateway", "publish", f"{infer}.{PROBE_TOKEN}"),
        Probe("read the routing bucket", "publish", f"{JS_API}.STREAM.INFO.KV_{bucket}"),
        Probe("write the routing bucket", "publish", f"$KV.{bucket}.{PROBE_TOKEN}"),
        Probe("send admin requests and SQL", "publish", f"{admin}.{PROBE_TOKEN}"),
        Probe("queue training jobs", "publish", train_subject(training)),
        Probe("publish training results", "publish", result_subject(training)),
        Probe("report training progress", "publish", f"{training.status_subject}.{PROBE_TOKEN}"),
        Probe("take jobs", "publish", f"{jobs}.{training.worker_consumer}"),
        Probe("read the training results", "publish", f"{jobs}.{RESULTS_CONSUMER}"),
        Probe("read published events", "subscribe", f"{ev}.>"),
        Probe("answer inference requests", "subscribe", f"{infer}.>"),
        Probe("answer admin requests", "subscribe", f"{admin}.>"),
        Probe("read the operator's replies", "subscribe", f"{inbox_prefix('operator')}.>"),
    ]
