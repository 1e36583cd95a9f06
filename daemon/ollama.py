"""After a promotion: the new champion published to Ollama (when its task has something
Ollama serves), in a background thread.

Publishing uploads files and waits for Ollama's create, which can take minutes, so it never
runs in the event loop nor holds up the experiment loop; and it can fail (Ollama down, an
Ollama that no longer imports adapters) without undoing the promotion: the failure is logged
as an error with what to do, and the registry keeps the new champion.
"""

from __future__ import annotations

import logging
import threading

from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.models.ollama import model_name
from kaizend.storage.events import EventStore
from kaizend.storage.registry import Registry

log = logging.getLogger(__name__)


def publish_promoted(settings: Settings, store: EventStore, version_id: str) -> str | None:
    """Publish `version_id` to ``ollama.url``; the Ollama model name, or None when nothing
    was published (no Ollama configured, a task Ollama does not serve, a built-in version 0,
    which has no model, or a failure, logged)."""
    from kaizend.models.tasks import build_task

    if not settings.ollama.url:
        return None
    with store.cursor() as con:
        record = Registry(con).get(version_id)
    if record.artifact_path is None or record.task not in settings.tasks:
        return None
    name = model_name(settings.ollama, version_id)
    try:
        publication = build_task(settings, record.task).publish_to_ollama(settings, record)
        return None if publication is None else publication.model
    except KaizendError as err:
        log.error("ollama publication of %s failed; the promotion stands: %s", name, err)
    except Exception:  # noqa: BLE001 - a bug here must not go unnoticed, nor kill the daemon
        log.exception("ollama publication of %s failed; the promotion stands", name)
    return None


def publish_in_background(
    settings: Settings, store: EventStore, version_id: str
) -> threading.Thread:
    """Start `publish_promoted` in a daemon thread (a stop of kaizend does not wait for an
    upload; Ollama writes a model only once its create succeeded) and return the thread."""
    thread = threading.Thread(
        target=publish_promoted,
        args=(settings, store, version_id),
        name=f"ollama-publish-{version_id}",
        daemon=True,
    )
    thread.start()
    return thread
