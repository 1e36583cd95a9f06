"""The inference gateway: NATS request-reply for services that would rather just ask.

A NATS micro service (``kaizen-gateway``; its instances share a queue group, so starting
more of them on other boxes spreads the load) with one endpoint per task on
``<gateway.subject_prefix>.<task>``. A request (`kaizend_client.InferRequest`: ``{"text",
"unit_id", "query_id"?, "service"?}``) is assigned an arm by the routing bucket (the same sticky
hash as the producer client), answered by that arm's version, and recorded as a query event
with arm, version, latency, fallback, error and the asking service:

    reply = await nc.request("kaizen.infer.parser", b'{"text": "wind in devon", "unit_id": "u1"}')
    {"query_id": "...", "task": "parser", "arm": "champion", "version": "parser-v0",
     "output": {...}, "fallback_used": false, "latency_ms": 3.1}

Feedback and corrections then refer to the reply's ``query_id``. Errors come back as micro
errors (headers ``Nats-Service-Error-Code`` and ``Nats-Service-Error``): 400 for a bad request,
503 while the task has no routing entry or its version cannot be loaded (yet), 500 when the
version failed on the query. Every error after routing is recorded as the arm's query event
with its ``error``, so the error-rate guardrail sees a challenger that cannot answer.

Requests that arrive together are answered in batches: one queue per task, a batch takes
what is waiting (up to ``max_batch``, after at most ``batch_wait_ms``) and each version's share
runs as one `Predictor.predict` call in the task's inference thread, never in the event loop.
Versions are loaded in the background (the routing entry's champion and challenger as soon
as they appear) and the most recently used ``cached_versions`` per task stay loaded. In
shadow mode the challenger also answers champion units, unanswered and after the reply;
its output is recorded as arm ``shadow`` (view ``shadow_comparisons``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kaizend.core import __version__, metrics
from kaizend.core.config import GatewaySettings
from kaizend.handlers.routing import Routing
from kaizend_client import InferError, InferReply, InferRequest, Producer
from kaizend_client.events import PATTERN_REASONS
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import ValidationError

log = logging.getLogger(__name__)

SERVICE_NAME = "kaizen-gateway"
WARM_INTERVAL_S = 1.0
RELOAD_AFTER_S = 30.0
"""A version that failed to load is tried again after this long (not on every request)."""


class Answer(Protocol):
    """One prediction (`models.task.Prediction`)."""

    output: Any
    fallback_used: bool


class Predictor(Protocol):
    """A loaded version (`models.task.Predictor`)."""

    def predict(self, texts: Sequence[str]) -> Sequence[Answer]: ...


PredictorLoader = Callable[[str, str, str | None], Predictor]
"""``(task, version_id, artifact directory or None for a built-in) -> Predictor``; blocking."""


def _error_text(err: Exception) -> str:
    """The error a query event records: the exception, with any NUL escaped (the column
    refuses NUL characters, and the event must store)."""
    return f"{type(err).__name__}: {err}".replace("\x00", "\\x00")


class GatewayError(Exception):
    """An answer that is an error reply; ``code`` as in HTTP."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Pending:
    version: str
    predictor: Predictor
    text: str
    answer: asyncio.Future[Answer]


@dataclass
class _TaskState:
    executor: ThreadPoolExecutor
    queue: asyncio.Queue[_Pending] = field(default_factory=asyncio.Queue)
    loaded: OrderedDict[str, asyncio.Future[Predictor]] = field(default_factory=OrderedDict)
    failed_at: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    batched_requests: int = 0


class Gateway:
    """The micro service, its batch loops and its loaded versions."""

    def __init__(
        self,
        settings: GatewaySettings,
        nc: NATS,
        producer: Producer,
        load: PredictorLoader,
        tasks: Sequence[str],
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.producer = producer
        self.load = load
        self.tasks = {
            task: _TaskState(ThreadPoolExecutor(1, thread_name_prefix=f"infer-{task}"))
            for task in tasks
        }
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="gateway-load")
        self._service: Service | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        started = time.perf_counter()
        self._service = await add_service(
            self.nc,
            name=SERVICE_NAME,
            version=__version__,
            description="kaizend inference gateway: routed, recorded model answers",
        )
        for task in self.tasks:
            await self._service.add_endpoint(
                name=task, subject=self.subject(task), handler=self._handler(task)
            )
            self._loops.append(asyncio.create_task(self._batch_loop(task), name=f"batch-{task}"))
        self._loops.append(asyncio.create_task(self._warm_loop(), name="gateway-warm"))
        log.info(
            "gateway started in %.0f ms: %s", (time.perf_counter() - started) * 1e3,
            ", ".join(self.subject(task) for task in self.tasks),
        )  # fmt: skip

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking requests, answer those in hand (within ``grace_s``), then stop."""
        started = time.perf_counter()
        if self._service is not None:
            with contextlib.suppress(Exception):
                await self._service.stop()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        for state in self.tasks.values():
            state.executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        log.info("gateway stopped in %.0f ms", (time.perf_counter() - started) * 1e3)

    def subject(self, task: str) -> str:
        return f"{self.settings.subject_prefix}.{task}"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per task: loaded versions, batches run and requests they answered."""
        return {
            task: {
                "loaded": [
                    version
                    for version, future in state.loaded.items()
                    if future.done() and not future.cancelled() and not future.exception()
                ],
                "batches": state.batches,
                "requests": state.batched_requests,
            }
            for task, state in self.tasks.items()
        }

    # -- versions ---------------------------------------------------------------------------

    def _predictor(
        self, task: str, version: str, artifact: str | None
    ) -> asyncio.Future[Predictor]:
        """The version's predictor, loading it in the background the first time."""
        state = self.tasks[task]
        future = state.loaded.get(version)
        failed = future is not None and future.done() and future.exception() is not None
        if future is not None and not failed:
            state.loaded.move_to_end(version)
            return future
        if failed and time.monotonic() - state.failed_at.get(version, 0.0) < RELOAD_AFTER_S:
            return future
        log.info("gateway: loading %s %s (%s)", task, version, artifact or "built-in")
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(
            self._loader, self.load, task, version, artifact
        )

        def loaded(done: asyncio.Future[Predictor]) -> None:
            if done.cancelled():
                return
            if done.exception() is not None:
                state.failed_at[version] = time.monotonic()
                log.error("gateway: %s %s could not be loaded: %s", task, version,
                          done.exception())  # fmt: skip
            else:
                log.info("gateway: %s %s loaded in %.1f s", task, version,
                         time.perf_counter() - started)  # fmt: skip

        future.add_done_callback(loaded)
        state.loaded[version] = future
        self._evict(task)
        return future

    def _evict(self, task: str) -> None:
        state = self.tasks[task]
        routing = self.producer.routes.get(task)
        keep = {routing.champion, routing.challenger} if routing else set()
        for version in list(state.loaded):
            if len(state.loaded) <= self.settings.cached_versions:
                break
            if version not in keep and state.loaded[version].done():
                del state.loaded[version]
                log.info("gateway: %s %s unloaded", task, version)

    async def _warm_loop(self) -> None:
        """Load each task's champion and challenger as soon as the routing names them."""
        while True:
            for task in self.tasks:
                routing = self.producer.routes.get(task)
                if routing is None:
                    continue
                for version in filter(None, (routing.champion, routing.challenger)):
                    if version not in self.tasks[task].loaded:
                        self._predictor(task, version, routing.artifact(version))
            await asyncio.sleep(WARM_INTERVAL_S)

    # -- requests ---------------------------------------------------------------------------

    def _handler(self, task: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> None:
            # nats-py runs a subscription's callbacks one after the other: answering in a
            # task of its own lets requests that arrive together meet in one batch.
            answer = asyncio.create_task(self._answer(task, request))
            self._in_flight.add(answer)
            answer.add_done_callback(self._in_flight.discard)

        return handle

    async def _answer(self, task: str, request: Request) -> None:
        started = time.perf_counter()
        try:
            infer = InferRequest.model_validate_json(request.data)
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "body"
            why = problem["msg"]
            if problem["type"] == "string_pattern_mismatch":
                why = PATTERN_REASONS.get(problem["ctx"]["pattern"], why)
            await request.respond_error("400", f"bad request: {where}: {why}")
            return
        query_id = infer.query_id or str(uuid.uuid4())
        unit_id = infer.unit_id or query_id
        routing = self.producer.routes.get(task)
        if routing is None:
            await request.respond_error(
                "503", f"no routing entry for {task} yet: is the kaizend daemon running?"
            )
            return
        arm, version = routing.assign(unit_id)
        routed = {"query_id": query_id, "task": task, "arm": arm, "version": version}
        try:
            answer = await self._predict(task, version, routing.artifact(version), infer.text)
        except Exception as err:  # noqa: BLE001 - the user saw an error: answered and recorded
            code = err.code if isinstance(err, GatewayError) else "500"
            error = _error_text(err)
            metrics.SERVING_ERRORS.labels(task, version, code).inc()
            await request.respond_error(
                code, error, InferError(**routed).model_dump_json().encode()
            )
            await self.producer.query(
                task, infer.text, unit_id=unit_id, output=None,
                latency_ms=(time.perf_counter() - started) * 1e3, arm=arm, version=version,
                error=error, query_id=query_id, service=infer.service,
            )  # fmt: skip
            return
        latency_ms = (time.perf_counter() - started) * 1e3
        metrics.SERVING_LATENCY_SECONDS.labels(task, version).observe(latency_ms / 1e3)
        metrics.SERVING_REQUESTS.labels(task, version).inc()
        if answer.fallback_used:
            metrics.SERVING_FALLBACKS.labels(task, version).inc()
        reply = InferReply(**routed, output=answer.output, fallback_used=answer.fallback_used,
                           latency_ms=round(latency_ms, 2))  # fmt: skip
        await request.respond(reply.model_dump_json().encode())
        await self.producer.query(
            task, infer.text, unit_id=unit_id, output=answer.output, latency_ms=latency_ms,
            arm=arm, version=version, query_id=query_id, fallback_used=answer.fallback_used,
            service=infer.service,
        )  # fmt: skip
        if routing.shadow and arm == "champion" and routing.challenger:
            await self._shadow(task, routing, infer, unit_id, query_id)

    async def _shadow(
        self, task: str, routing: Routing, infer: InferRequest, unit_id: str, query_id: str
    ) -> None:
        """The challenger's answer to a champion unit, recorded but never shown."""
        assert routing.challenger is not None
        text = infer.text
        started = time.perf_counter()
        error, answer = None, None
        try:
            answer = await self._predict(
                task, routing.challenger, routing.challenger_artifact, text
            )
        except Exception as err:  # noqa: BLE001 - recorded as the shadow's error
            error = _error_text(err)
        await self.producer.query(
            task, text, unit_id=unit_id, output=answer.output if answer else None,
            latency_ms=(time.perf_counter() - started) * 1e3, arm="shadow",
            version=routing.challenger, error=error, query_id=f"shadow:{query_id}",
            fallback_used=answer.fallback_used if answer else None,
            extra={"shadow_of": query_id}, service=infer.service,
        )  # fmt: skip

    async def _predict(self, task: str, version: str, artifact: str | None, text: str) -> Answer:
        loading = self._predictor(task, version, artifact)
        try:
            predictor = await asyncio.wait_for(asyncio.shield(loading), self.settings.load_wait_s)
        except TimeoutError as err:
            raise GatewayError(
                "503", f"{task} {version} is still loading; try again shortly"
            ) from err
        except Exception as err:  # noqa: BLE001 - a version that cannot load cannot answer
            raise GatewayError("503", f"{task} {version} cannot be loaded: {err}") from err
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        await self.tasks[task].queue.put(_Pending(version, predictor, text, answer))
        return await answer

    async def _batch_loop(self, task: str) -> None:
        state = self.tasks[task]
        loop = asyncio.get_running_loop()
        wait_s = self.settings.batch_wait_ms / 1e3
        while True:
            batch = [await state.queue.get()]
            deadline = loop.time() + wait_s
            while len(batch) < self.settings.max_batch:
                try:
                    batch.append(state.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(state.queue.get(), left))
                except TimeoutError:
                    break
            by_version: dict[str, list[_Pending]] = {}
            for pending in batch:
                by_version.setdefault(pending.version, []).append(pending)
            for group in by_version.values():
                await self._run(state, group)

    async def _run(self, state: _TaskState, group: list[_Pending]) -> None:
        predictor = group[0].predictor
        texts = [p.text for p in group]
        try:
            answers = await asyncio.get_running_loop().run_in_executor(
                state.executor, predictor.predict, texts
            )
            if len(answers) != len(texts):
                raise RuntimeError(f"{len(answers)} answers to {len(texts)} queries")
        except Exception as err:  # noqa: BLE001 - every request of the batch gets the error
            for pending in group:
                if not pending.answer.done():
                    pending.answer.set_exception(err)
            return
        state.batches += 1
        state.batched_requests += len(group)
        for pending, answer in zip(group, answers, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(answer)
