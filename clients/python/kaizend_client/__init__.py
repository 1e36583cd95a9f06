"""kaizend-client: publish kaizend's events and ask its inference gateway, without kaizend.

Depends on nats-py and pydantic only. The kaizend daemon uses these same models, routing
hash and producer, so what this client sends is what the daemon stores:

    from kaizend_client import Producer, infer

    producer = await Producer.start(nc, service="fit-search")
    arm, version = producer.route("parser", unit_id=user_id)
    query_id = await producer.query("parser", text, unit_id=user_id, output=parsed,
                                    latency_ms=12.5, arm=arm, version=version)
    await producer.feedback(query_id, rating=5)
"""

from kaizend_client.errors import InvalidEvent, KaizendError
from kaizend_client.events import (
    EVENT_TYPES,
    CorrectionEvent,
    Event,
    FeedbackEvent,
    QueryEvent,
)
from kaizend_client.inference import (
    InferenceFailed,
    InferError,
    InferReply,
    InferRequest,
    infer,
)
from kaizend_client.producer import Producer, encode_event
from kaizend_client.routing import BUCKET, Arm, Routing, open_routing, unit_position

__version__ = "0.1.0"

__all__ = [
    "BUCKET",
    "EVENT_TYPES",
    "Arm",
    "CorrectionEvent",
    "Event",
    "FeedbackEvent",
    "InferError",
    "InferReply",
    "InferRequest",
    "InferenceFailed",
    "InvalidEvent",
    "KaizendError",
    "Producer",
    "QueryEvent",
    "Routing",
    "encode_event",
    "infer",
    "open_routing",
    "unit_position",
]
