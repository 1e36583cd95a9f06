"""The AsyncAPI 3 document of kaizend's NATS interface, generated from the code.

FastStream describes what the daemon subscribes to through it (the admin responders, with the
payload schemas of their type hints), from the same registration function the daemon calls.
What FastStream cannot see is completed here from the same sources: the events stream and
its pull consumer (the ingest loop pulls batches with nats-py, `kaizend.handlers.pull`), the
event payloads and the ``Nats-Msg-Id`` header with the stream's duplicate window (the stream
settings), the inference gateway's request-reply and its error codes (a NATS micro
service, not a FastStream subscriber), the routing bucket, and who may use each subject (the
roles of :mod:`kaizend.handlers.permissions`; the admin subjects are operator-only).

The document describes the daemon: it *receives* events, inference requests and admin
requests, and *sends* routing entries. Its subjects follow the configuration, so ``kaizend
schemas`` describes the deployment it runs in; ``schemas/asyncapi.json`` in the repository is
the document of the built-in defaults, and a test keeps it equal to the generated one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from kaizend.core import __version__
from kaizend.core.config import NatsSettings, Settings
from kaizend.handlers.admin import ADMIN_REQUESTS, Admin
from kaizend.handlers.gateway import SERVICE_NAME
from kaizend.handlers.ingest import Ingestor
from kaizend.handlers.permissions import role_permissions, user_name
from kaizend.handlers.routing import HISTORY
from kaizend.storage.events import EventStore
from kaizend_client.events import EVENT_TYPES, MSG_ID_HEADER
from kaizend_client.inference import ERROR_CODE_HEADER, ERROR_CODES, ERROR_HEADER
from kaizend_client.schemas import MODELS, dumps, json_schema, json_schemas
from nats.micro.service import DEFAULT_QUEUE_GROUP

ASYNCAPI_VERSION = "3.0.0"
NATS_BINDING = "0.1.0"
"""The version of AsyncAPI's NATS bindings (an operation's ``queue``)."""
FILE_NAME = "asyncapi.json"

_SCHEMA_NAMES = {
    "query-event": "QueryEvent",
    "feedback-event": "FeedbackEvent",
    "correction-event": "CorrectionEvent",
    "infer-request": "InferRequest",
    "infer-reply": "InferReply",
    "infer-error": "InferError",
    "routing-entry": "RoutingEntry",
}
"""The component name of each JSON Schema of :data:`kaizend_client.schemas.MODELS`."""


def builtin_settings() -> Settings:
    """The built-in defaults, whatever ``config.toml`` and the ``KAIZEND_*`` environment say:
    what the committed documents in ``schemas/`` describe. (The sections' defaults are
    validated models already; only the environment source must be left out.)"""
    return Settings.model_construct()


def _task_parameter(tasks: tuple[str, ...]) -> dict[str, Any]:
    """The ``{task}`` of the gateway's subjects: the configuration's tasks when it declares
    some (the built-in defaults declare none)."""
    described = {"description": "The task to answer for: one declared as [tasks.<name>]."}
    return {"enum": list(tasks), **described} if tasks else described


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _embedded(name: str) -> dict[str, Any]:
    """The JSON Schema of ``name`` inside the document: AsyncAPI's default schema format
    (a superset of JSON Schema draft 07) needs neither the dialect nor the file's id."""
    schema = json_schema(name)
    del schema["$schema"], schema["$id"]
    return schema


def faststream_document(settings: Settings) -> dict[str, Any]:
    """FastStream's AsyncAPI 3 document of the daemon's FastStream subscribers: the admin
    responders, registered as the daemon registers them (on a broker that never connects,
    over an in-memory store that is never written)."""
    broker = NatsBroker(settings.nats.url)
    store = EventStore(Path(":memory:"))
    try:
        ingestor = Ingestor(store, settings.ingest, settings.stream.subject_prefix)
        Admin(settings, store, ingestor, settings.nats.url).register(broker)
        spec = AsyncAPI(broker, title="kaizend", schema_version=ASYNCAPI_VERSION)
        return spec.to_specification().to_jsonable()
    finally:
        store.close()


def _subscribers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """FastStream's channels by address: description and payload schema."""
    found = {}
    for channel in spec["channels"].values():
        (message,) = channel["messages"].values()
        name = unquote(message["$ref"].rsplit("/", 1)[1])
        payload = spec["components"]["messages"][name]["payload"]
        found[channel["address"]] = {"description": channel.get("description"), "payload": payload}
    return found


def _server_host(nats: NatsSettings) -> str:
    """``host:port`` of the (first) configured server, or of the embedded one; never the
    credentials a URL may hold."""
    if not nats.url:
        return f"{nats.embedded_host}:{nats.embedded_port}"
    first = urlsplit(nats.url.split(",")[0].strip())
    return f"{first.hostname}:{first.port or 4222}"


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The whole document for ``settings``: FastStream's subscribers, completed."""
    spec = faststream_document(settings)
    subscribers = _subscribers(spec)
    stream, ingest, gateway = settings.stream, settings.ingest, settings.gateway
    admin_prefix = settings.admin.subject_prefix
    bucket = settings.routing.bucket
    roles = role_permissions(settings)

    schemas: dict[str, Any] = {_SCHEMA_NAMES[name]: _embedded(name) for name in MODELS}
    for name, schema in sorted(spec["components"].get("schemas", {}).items()):
        if name != "EmptyPayload":  # a responder without a payload, such as status
            schemas[name] = schema
    schemas["EventHeaders"] = {
        "type": "object",
        "required": [MSG_ID_HEADER],
        "properties": {
            MSG_ID_HEADER: {
                "type": "string",
                "description": "The event's event_id. JetStream drops a message whose id it "
                f"has seen within the stream's duplicate window ({stream.duplicate_window_s:g} "
                "s, stream.duplicate_window_s), so a producer that retries a publish stores "
                "the event once; the daemon's primary key on event_id catches a re-publish "
                "after the window.",
            }
        },
    }
    schemas["InferErrorHeaders"] = {
        "type": "object",
        "required": [ERROR_CODE_HEADER, ERROR_HEADER],
        "properties": {
            ERROR_CODE_HEADER: {
                "type": "string",
                "enum": list(ERROR_CODES),
                "description": "; ".join(f"{code}: {why}" for code, why in ERROR_CODES.items()),
            },
            ERROR_HEADER: {"type": "string", "description": "What went wrong, for a person."},
        },
    }

    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    security_schemes = {
        role: {
            "type": "userPassword",
            "description": f"NATS user {user_name(role)} (role {role}): "
            + "; ".join(roles[role].notes)
            + ". Enforced where the NATS server has kaizend's permissions (`kaizend security "
            "permissions`; the embedded server's nats.embedded_auth).",
        }
        for role in ("service", "operator", "daemon")
    }

    # -- events: the stream on <prefix>.>, pulled by the ingest loop; a channel per kind -------
    events_address = f"{stream.subject_prefix}.>"
    jetstream = {
        "stream": stream.name,
        "subjects": [events_address],
        "storage": stream.storage,
        "maxAgeDays": stream.max_age_days,
        "maxBytes": stream.max_bytes,
        "maxMsgs": stream.max_msgs,
        "duplicateWindowSeconds": stream.duplicate_window_s,
        "replicas": stream.replicas,
        "consumer": {
            "durable": ingest.consumer,
            "ackPolicy": "explicit",
            "ackWaitSeconds": ingest.ack_wait_s,
            "maxDeliver": ingest.max_deliver,
            "maxPayloadBytes": ingest.max_payload_bytes,
        },
    }
    for kind, model in EVENT_TYPES.items():
        schema_name = model.__name__
        messages[f"{kind}Event"] = {
            "name": schema_name,
            "title": f"{kind} event",
            "summary": (model.__doc__ or "").split("\n\n")[0].replace("\n", " "),
            "contentType": "application/json",
            "headers": _ref("components", "schemas", "EventHeaders"),
            "payload": _ref("components", "schemas", schema_name),
        }
        channels[f"{kind}Events"] = {
            "address": f"{stream.subject_prefix}.{kind}",
            "title": f"{kind} events",
            "description": "Published as JSON by production services; captured by the "
            f"JetStream stream {stream.name} ({events_address}).",
            "messages": {f"{kind}Event": _ref("components", "messages", f"{kind}Event")},
            "x-jetstream": jetstream,
        }
        operations[f"ingest{kind.title()}Events"] = {
            "action": "receive",
            "title": f"Store {kind} events",
            "description": "The daemon's durable pull consumer validates each event, stores it "
            "in DuckDB and acknowledges it after the commit (at-least-once delivery, stored "
            "exactly once by event_id). A message that can never become an event is kept with "
            "its bytes and the reason in rejected_events. Unknown fields are kept in the extra "
            "column.",
            "channel": _ref("channels", f"{kind}Events"),
            "messages": [_ref("channels", f"{kind}Events", "messages", f"{kind}Event")],
            "security": [_ref("components", "securitySchemes", "service")],
        }

    # -- the inference gateway: a NATS micro service, request-reply ---------------------------
    messages["inferRequest"] = {
        "name": "InferRequest",
        "title": "Inference request",
        "contentType": "application/json",
        "payload": _ref("components", "schemas", "InferRequest"),
    }
    messages["inferReply"] = {
        "name": "InferReply",
        "title": "Inference reply",
        "contentType": "application/json",
        "payload": _ref("components", "schemas", "InferReply"),
    }
    messages["inferError"] = {
        "name": "InferError",
        "title": "Inference error reply",
        "summary": "A NATS micro-service error: the code and message in the headers. After "
        "routing the body names the query, arm and version; a 400, and a 503 for a task "
        "without a routing entry, have an empty body.",
        "contentType": "application/json",
        "headers": _ref("components", "schemas", "InferErrorHeaders"),
        "payload": _ref("components", "schemas", "InferError"),
    }
    channels["inferRequests"] = {
        "address": f"{gateway.subject_prefix}.{{task}}",
        "title": "Inference requests",
        "description": f"The inference gateway (NATS micro service {SERVICE_NAME}; its "
        "instances share a queue group) routes each request by the routing bucket, answers "
        "with that arm's version and records the query event itself.",
        "parameters": {"task": _task_parameter(settings.served_tasks)},
        "messages": {"inferRequest": _ref("components", "messages", "inferRequest")},
    }
    channels["inferReplies"] = {
        "address": None,
        "title": "Inference replies",
        "description": "The requester's reply subject (an inbox).",
        "messages": {
            "inferReply": _ref("components", "messages", "inferReply"),
            "inferError": _ref("components", "messages", "inferError"),
        },
    }
    operations["answerInference"] = {
        "action": "receive",
        "title": "Answer an inference request",
        "channel": _ref("channels", "inferRequests"),
        "messages": [_ref("channels", "inferRequests", "messages", "inferRequest")],
        "reply": {
            "channel": _ref("channels", "inferReplies"),
            "messages": [
                _ref("channels", "inferReplies", "messages", "inferReply"),
                _ref("channels", "inferReplies", "messages", "inferError"),
            ],
        },
        "bindings": {"nats": {"queue": DEFAULT_QUEUE_GROUP, "bindingVersion": NATS_BINDING}},
        "security": [_ref("components", "securitySchemes", "service")],
    }

    # -- the routing bucket: JetStream key-value, written by the daemon ------------------------
    messages["routingEntry"] = {
        "name": "RoutingEntry",
        "title": "Routing entry",
        "contentType": "application/json",
        "payload": _ref("components", "schemas", "RoutingEntry"),
    }
    channels["routing"] = {
        "address": f"$KV.{bucket}.{{task}}",
        "title": "Routing bucket",
        "description": f"The JetStream key-value bucket {bucket} (stream KV_{bucket}; key = "
        "task). Producers and gateways read and watch it, never write it. A unit goes to the "
        "challenger when the first 8 bytes of sha256('<salt>:<unit_id>') (UTF-8), big-endian, "
        "divided by 2**64, fall below challenger_weight; clients check themselves against "
        "routing-vectors.json.",
        "parameters": {"task": {"description": "The task, the entry's key."}},
        "messages": {"routingEntry": _ref("components", "messages", "routingEntry")},
        "x-kv": {
            "bucket": bucket,
            "history": HISTORY,
            "storage": "file",
            "replicas": settings.routing.replicas,
        },
    }
    operations["writeRouting"] = {
        "action": "send",
        "title": "Write a task's routing entry",
        "description": "The daemon rewrites an entry that disagrees with the registry at every "
        "experiment tick; a change reaches every watching producer without a restart.",
        "channel": _ref("channels", "routing"),
        "messages": [_ref("channels", "routing", "messages", "routingEntry")],
        "security": [_ref("components", "securitySchemes", "daemon")],
    }

    # -- admin requests: FastStream responders, operator-only ----------------------------------
    messages["adminReply"] = {
        "name": "AdminReply",
        "title": "Admin reply",
        "summary": "A JSON object: the answer the subject's description names, or {error}.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "Why it was refused."}},
        },
    }
    channels["adminReplies"] = {
        "address": None,
        "title": "Admin replies",
        "description": "The operator's reply subject (a private inbox, "
        f"{roles['operator'].subscribe[0]}).",
        "messages": {"adminReply": _ref("components", "messages", "adminReply")},
    }
    for name in ADMIN_REQUESTS:
        address = f"{admin_prefix}.{name}"
        found = subscribers.pop(address, None)
        if found is None:
            raise RuntimeError(f"no FastStream responder on {address}")
        payload = found["payload"]
        if payload == _ref("components", "schemas", "EmptyPayload"):
            payload = {"description": "Ignored: send {} or nothing."}
        message = f"admin{name.title()}Request"
        messages[message] = {
            "name": message[0].upper() + message[1:],
            "title": f"Admin {name} request",
            "contentType": "application/json",
            "payload": payload,
        }
        channel = f"admin{name.title()}"
        channels[channel] = {
            "address": address,
            "title": f"Admin: {name}",
            "description": found["description"],
            "messages": {message: _ref("components", "messages", message)},
        }
        operations[f"answerAdmin{name.title()}"] = {
            "action": "receive",
            "title": f"Answer an operator's {name} request",
            "channel": _ref("channels", channel),
            "messages": [_ref("channels", channel, "messages", message)],
            "reply": {
                "channel": _ref("channels", "adminReplies"),
                "messages": [_ref("channels", "adminReplies", "messages", "adminReply")],
            },
            "tags": [_ref("components", "tags", "operatorOnly")],
            "security": [_ref("components", "securitySchemes", "operator")],
        }
    if subscribers:  # a new FastStream subscriber: describe it above
        raise RuntimeError(f"FastStream subscribers not in the document: {sorted(subscribers)}")

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "kaizend",
            "version": __version__,
            "description": "The NATS interface of kaizend, a continuous-learning daemon: the "
            "events production services publish, the inference gateway they may ask, the "
            "routing bucket they watch, and the operators' admin subjects. JSON Schemas of "
            "the payloads: schemas/*.json; the Python client: kaizend-client.",
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": "application/json",
        "servers": {
            "kaizend": {
                "host": _server_host(settings.nats),
                "protocol": "nats",
                "description": "The NATS server of the daemon (nats.url); the daemon can "
                "embed one.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": security_schemes,
            "tags": {
                "operatorOnly": {
                    "name": "operator-only",
                    "description": "Only the operator role may publish here; services, "
                    "workers and the daemon's other clients are denied.",
                }
            },
        },
    }


def contract_files(settings: Settings) -> dict[str, str]:
    """Every generated file of the contract by name, as its text: the JSON Schemas and the
    AsyncAPI document (what ``schemas/`` in the repository holds, for the defaults)."""
    files = {name: dumps(schema) for name, schema in json_schemas().items()}
    files[FILE_NAME] = dumps(asyncapi_document(settings))
    return files
