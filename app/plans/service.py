"""Plan runs: admission as a unit of work, execution as a supervised task, state and outputs.

A run is admitted like a chat request (`QuotaService.admit`: the day's counts, the
LLM grant, a system slot), except that its lease is taken in the tenant's batch
scope, sized by the tier's "batch jobs active" — so many workers never run more
than the limit at once, and a refused run takes nothing. The run holds that lease
while it runs (renewed by the housekeeping pass; it lapses if the worker dies) and
gives it back when it succeeds, fails or is cancelled.

What is stored where (SPEC: PostgreSQL never holds user content):
- the `plan_runs` row: status, each step's status, credits and timestamps, the lease
  and the worker running it — what `GET /plans/runs/{id}` shows from any worker;
- step outputs (answer text, action descriptors): in the memory of the worker that
  ran the run, for PLAN_RUN_OUTPUT_TTL_SECONDS after it ended; followed live on the
  WebSocket, or polled from that worker. Elsewhere, or later, a poll says
  `outputs: elsewhere` / `expired`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI
from pydantic import ValidationError

from app.billing.tiers import Feature, TierTable
from app.chat.agents import Workspace, registry
from app.chat.llm import DEMO_CLIENT, ModelCaller, llm_client
from app.chat.plans import PlanService, PlanValidationError, inputs_model, validate_plan
from app.chat.schemas import ChatContext, ExecutionPlan, PlanStepFrame
from app.config import Settings
from app.credits.service import CreditService
from app.db import Database
from app.errors import (
    AppError,
    Conflict,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
)
from app.kit.tasks import supervised
from app.models import PlanRun
from app.models.base import utcnow
from app.plans.repository import ACTIVE, PlanRunRepository
from app.plans.runner import PlanExecution, run_actions
from app.plans.schemas import PlanRunStatus, StepOutput, StepState
from app.quota.service import Admission, QuotaService, batch_scope
from app.shutdown import GracefulShutdown
from app.work import Charge, CreditMeter, Identity, LLMKey, UnitOfWork

log = logging.getLogger(__name__)

# Seconds a cancelled run's task is given to settle its credits before DELETE answers.
CANCEL_WAIT_SECONDS = 10.0


class StepCredits:
    """The run's credit accountant: reserves and settles each call like chat, and tallies
    what was settled so each step reports its own credits."""

    def __init__(self, inner: Any, credits: CreditService) -> None:
        self.inner = inner
        self.credits = credits
        self.spent = 0

    async def reserve(self, unit: UnitOfWork, credits: int) -> str:
        return await self.inner.reserve(unit, credits)

    async def settle(self, unit: UnitOfWork, reservation: str, meter: CreditMeter) -> None:
        await self.inner.settle(unit, reservation, meter)
        self.spent += self.credits.credits_for(meter.cost_usd)


@dataclass(eq=False)
class LiveRun:
    """A run this worker executes (or executed, until its outputs expire)."""

    run_id: str
    tenant_id: uuid.UUID
    plan: ExecutionPlan
    demo: bool
    admission: Admission
    steps: list[dict[str, Any]]
    status: str = "queued"
    error: str | None = None
    error_status: int | None = None
    credits: int = 0
    outputs: dict[str, StepOutput] = field(default_factory=dict)
    frames: list[PlanStepFrame] = field(default_factory=list)
    ended: bool = False
    cancel_reason: str | None = None  # "cancelled" (DELETE) or "shutdown"
    expires_at: float | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def emit(self, frame: PlanStepFrame | None, *, end: bool = False) -> None:
        async with self.changed:
            if frame is not None:
                self.frames.append(frame)
            self.ended = self.ended or end
            self.changed.notify_all()

    async def follow(self) -> AsyncIterator[PlanStepFrame]:
        """Every step frame from the first, as they come, until the run has ended."""
        seen = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(partial(self._news, seen))
                frames, ended = self.frames[seen:], self.ended
            seen += len(frames)
            for frame in frames:
                yield frame
            if ended and seen == len(self.frames):
                return

    def _news(self, seen: int) -> bool:
        return len(self.frames) > seen or self.ended

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None and self.task is not None and not self.task.done():
            self.cancel_reason = reason
            self.task.cancel()


def _step_state(step: Any) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": step.kind,
        "agent": step.agent if step.kind == "llm" else None,
        "template_id": step.template_id,
        "action": step.action,
        "status": "pending",
        "credits": 0,
        "started_at": None,
        "finished_at": None,
        "error": None,
    }


def _now_iso() -> str:
    return utcnow().isoformat()


class PlanRuns:
    """The plan runs of one worker process (on `app.state.plan_runs`)."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        tiers: TierTable,
        quotas: QuotaService,
        credits: CreditService,
        plans: PlanService,
    ) -> None:
        self.settings = settings
        self.tiers = tiers
        self.quotas = quotas
        self.credits = credits
        self.plans = plans
        self.repo = PlanRunRepository(db)
        self.worker_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.live: dict[str, LiveRun] = {}
        self.stopping = False

    # --- plans ---------------------------------------------------------------------------
    async def issue(self, plan: ExecutionPlan, tenant_id: uuid.UUID) -> None:
        """Bind a plan `execution_mode: plan` returned to the tenant that received it."""
        await self.repo.issue(plan.plan_id, tenant_id, plan.model_dump(mode="json"))

    async def issued_plan(self, plan_id: str, identity: Identity) -> ExecutionPlan:
        """A plan issued to the caller's tenant; any other id is a 404 (not a 403)."""
        assert identity.tenant_id is not None
        # The batch builder first: a tier without it learns why, whatever the id.
        self.tiers.require_feature(identity.tier, Feature.BATCH_BUILDER)
        since = utcnow() - timedelta(seconds=self.settings.ISSUED_PLAN_TTL_SECONDS)
        stored = await self.repo.issued(plan_id, identity.tenant_id, since)
        if stored is None:
            raise NotFound(
                "No plan with this id was issued to this workspace (or it expired).",
                error="plan_not_found",
            )
        return ExecutionPlan.model_validate(stored)

    def authorize(self, plan: ExecutionPlan, identity: Identity) -> None:
        """The tier rule: plan mode is the batch builder (power+); playbooks are for all
        tiers, within the agents the tier may use."""
        if plan.playbook is None:
            self.tiers.require_feature(identity.tier, Feature.BATCH_BUILDER)
        for agent in dict.fromkeys(s.agent for s in plan.steps if s.kind == "llm" and s.agent):
            self.tiers.require_agent(identity.tier, agent)

    def validate_inputs(self, plan: ExecutionPlan, inputs: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_plan(plan, self.plans.templates)
        except PlanValidationError as exc:
            raise Unprocessable(f"The plan cannot run: {exc}.", error="invalid_plan") from exc
        try:
            model = inputs_model(plan).model_validate(inputs)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'inputs'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            raise Unprocessable(f"Invalid plan inputs ({problems}).") from exc
        return model.model_dump()

    # --- starting ------------------------------------------------------------------------
    async def start(
        self,
        identity: Identity,
        llm_key: LLMKey | None,
        request_id: str | None,
        plan: ExecutionPlan,
        inputs: dict[str, Any],
        context: ChatContext | None,
        *,
        plan_id: str | None,
    ) -> LiveRun:
        """Admit the run (429 `batch_limit` at the tier's limit) and start executing it."""
        if self.stopping:
            raise ServiceUnavailable(
                "The server is restarting; start the run again in a moment.",
                error="server_shutting_down",
                headers={"Retry-After": "5"},
            )
        self.authorize(plan, identity)
        inputs = self.validate_inputs(plan, inputs)
        assert identity.tenant_id is not None
        limit = self.tiers[identity.tier].batch_jobs_active
        admission = await self.quotas.admit(
            identity, llm_key, request_id, batch=batch_scope(identity, limit)
        )
        unit = admission.unit
        run_id = uuid.uuid4().hex
        steps = [_step_state(step) for step in plan.steps]
        try:
            await self.repo.create(
                id=run_id,
                tenant_id=identity.tenant_id,
                user_id=identity.user_id,
                plan_id=plan_id,
                playbook=plan.playbook,
                status="queued",
                steps=steps,
                credits_spent=0,
                lease_id=admission.lease_id,
                worker=self.worker_id,
                demo=not unit.llm.use_llm,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.quotas.finish(admission, Charge.NO_LLM)
            raise
        live = LiveRun(run_id, identity.tenant_id, plan, not unit.llm.use_llm, admission, steps)
        self.live[run_id] = live
        live.task = asyncio.create_task(
            self._execute(live, inputs, context), name=f"plan-run-{run_id}"
        )
        return live

    def _model(self, unit: UnitOfWork) -> tuple[ModelCaller, StepCredits | None]:
        if not unit.llm.use_llm:
            return ModelCaller(DEMO_CLIENT, None), None
        tally = None
        if unit.accountant is not None:
            tally = StepCredits(unit.accountant, self.credits)
            unit = dataclasses.replace(unit, accountant=tally)
        return ModelCaller(llm_client(self.settings, unit.llm), unit), tally

    # --- executing -----------------------------------------------------------------------
    async def _save(self, live: LiveRun, **values: Any) -> bool:
        return await self.repo.update_active(
            live.run_id, steps=[dict(s) for s in live.steps], credits_spent=live.credits, **values
        )

    async def _execute(
        self, live: LiveRun, inputs: dict[str, Any], context: ChatContext | None
    ) -> None:
        llm, tally = self._model(live.admission.unit)
        execution = PlanExecution(
            live.plan,
            templates=self.plans.templates,
            registry=registry,
            llm=llm,
            inputs=inputs,
            workspace=Workspace(context),
        )
        current: dict[str, Any] | None = None
        completed = 0
        try:
            if not await self._save(live, status="running", started_at=utcnow()):
                raise _EndedElsewhere
            live.status = "running"
            for step in live.plan.steps:
                current = live.steps[completed]
                current.update(status="running", started_at=_now_iso())
                if not await self._save(live):
                    raise _EndedElsewhere
                await live.emit(self._frame(live, current))
                before = tally.spent if tally else 0
                try:
                    output = await execution.run_step(step)
                finally:
                    spent = (tally.spent if tally else 0) - before
                    current["credits"] = spent
                    live.credits += spent
                live.outputs[step.id] = output
                current.update(status="succeeded", finished_at=_now_iso())
                completed += 1
                current = None
                if not await self._save(live):
                    await live.emit(self._frame(live, live.steps[completed - 1]))
                    raise _EndedElsewhere
                await live.emit(self._frame(live, live.steps[completed - 1]))
            live.status = "succeeded"
        except asyncio.CancelledError:
            if live.cancel_reason == "shutdown":
                live.status, live.error, live.error_status = "failed", "server_shutting_down", 503
            else:
                live.status = "cancelled"
        except _EndedElsewhere:
            live.status = "cancelled"
        except AppError as exc:
            live.status, live.error, live.error_status = "failed", exc.error, exc.status_code
        except Exception:
            log.exception("plan run failed", extra={"run_id": live.run_id})
            live.status, live.error, live.error_status = "failed", "internal_error", 500
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(live, current, completed)

    async def _end(self, live: LiveRun, current: dict[str, Any] | None, completed: int) -> None:
        if current is not None:
            current.update(
                status="cancelled" if live.status == "cancelled" else "failed",
                finished_at=_now_iso(),
                error=live.error,
            )
        try:
            await self._save(live, status=live.status, error=live.error, finished_at=utcnow())
        except Exception:
            log.exception("could not record the end of a plan run", extra={"run_id": live.run_id})
        if live.status == "failed" and live.error_status is not None:
            # Refused or invalid before any step did work: the run costs nothing (§12.2).
            charge = Charge.for_status(live.error_status)
            if charge is Charge.NOTHING and completed:
                charge = Charge.FULL
        elif live.status == "cancelled" and not completed and current is None:
            charge = Charge.NOTHING  # cancelled before any step began: no work was done
        else:
            charge = Charge.FULL
        await self.quotas.finish(live.admission, charge)
        if current is not None:
            await live.emit(self._frame(live, current))
        live.expires_at = time.monotonic() + self.settings.PLAN_RUN_OUTPUT_TTL_SECONDS
        await live.emit(None, end=True)

    @staticmethod
    def _frame(live: LiveRun, state: dict[str, Any]) -> PlanStepFrame:
        output = live.outputs.get(state["id"]) if state["status"] == "succeeded" else None
        return PlanStepFrame(
            plan_step=state["id"],
            run_id=live.run_id,
            kind=state["kind"],
            status=state["status"],
            text=output.text if output else None,
            actions=list(output.actions) if output else [],
            credits=state["credits"],
            error=state["error"],
        )

    # --- reading and cancelling ----------------------------------------------------------
    def local(self, run_id: str) -> LiveRun | None:
        live = self.live.get(run_id)
        if live is not None and live.expires_at is not None and live.expires_at < time.monotonic():
            del self.live[run_id]
            return None
        return live

    async def _row(self, run_id: str, tenant_id: uuid.UUID) -> PlanRun:
        row = await self.repo.get(run_id, tenant_id)
        if row is None:
            raise NotFound("No plan run with this id in this workspace.", error="run_not_found")
        return row

    async def status(self, run_id: str, tenant_id: uuid.UUID) -> PlanRunStatus:
        row = await self._row(run_id, tenant_id)
        live = self.local(run_id)
        if live is not None and live.tenant_id != tenant_id:
            live = None
        steps = live.steps if live is not None else row.steps
        outputs = live.outputs if live is not None else {}
        if live is not None:
            where = "available"
        elif row.worker == self.worker_id or (
            row.status not in ACTIVE and _older_than(row, self.settings.PLAN_RUN_OUTPUT_TTL_SECONDS)
        ):
            where = "expired"
        else:
            where = "elsewhere"
        return PlanRunStatus(
            run_id=row.id,
            plan_id=row.plan_id,
            playbook=row.playbook,
            status=row.status,  # type: ignore[arg-type]
            demo=row.demo,
            credits_spent=row.credits_spent,
            error=row.error,
            steps=[StepState(**s, output=outputs.get(s["id"])) for s in steps],
            actions=run_actions(live.plan, outputs) if live is not None else None,
            outputs=where,  # type: ignore[arg-type]
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    async def cancel(self, run_id: str, tenant_id: uuid.UUID) -> PlanRunStatus:
        """Stop a run of this tenant: between steps, or interrupting the running one."""
        row = await self._row(run_id, tenant_id)
        if row.status not in ACTIVE:
            raise Conflict(f"The run has already ended ({row.status}).", error="run_ended")
        live = self.local(run_id)
        if live is not None and live.task is not None and not live.task.done():
            live.cancel("cancelled")
            await asyncio.wait({live.task}, timeout=CANCEL_WAIT_SECONDS)
        elif (
            await self.repo.update_active(run_id, status="cancelled", finished_at=utcnow())
            and row.lease_id is not None
        ):
            # Run by another worker: its lease goes back now; that worker sees the run
            # ended at its next step or lease renewal, and stops.
            await self.quotas.release_lease(row.lease_id)
        return await self.status(run_id, tenant_id)

    # --- housekeeping and shutdown -------------------------------------------------------
    async def housekeeping(self) -> None:
        """Renew the leases of running runs (stop those ended elsewhere), mark them alive,
        end runs whose worker died, drop expired outputs and old issued plans."""
        running = [live for live in list(self.live.values()) if not live.ended]
        for live in running:
            if not await self.quotas.renew(live.admission.lease_id):
                # The lease is gone: cancelled from another worker (or lapsed).
                live.cancel("cancelled")
        await self.repo.touch_active([live.run_id for live in running])
        ttl = self.settings.LEASE_TTL_SECONDS
        for lease_id in await self.repo.reap(utcnow() - timedelta(seconds=2 * ttl)):
            if lease_id is not None:
                await self.quotas.release_lease(lease_id)
        for run_id in list(self.live):
            self.local(run_id)
        await self.repo.prune_issued(
            utcnow() - timedelta(seconds=self.settings.ISSUED_PLAN_TTL_SECONDS)
        )

    async def stop(self) -> None:
        """End every running run as failed (`server_shutting_down`), leases released."""
        self.stopping = True
        tasks = [live.task for live in self.live.values() if live.task and not live.task.done()]
        for live in list(self.live.values()):
            live.cancel("shutdown")
        if tasks:
            log.info("shutting down: ending plan runs", extra={"runs": len(tasks)})
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)


def account_of(identity: Identity | None) -> Identity:
    """Runs belong to a workspace: only signed-in callers start or see them."""
    if identity is None or not identity.has_account or identity.tenant_id is None:
        raise Unauthorized("Sign in to run plans.", error="not_authenticated")
    return identity


class _EndedElsewhere(Exception):
    """The run's row says it ended (cancelled from another worker, or reaped)."""


def _older_than(row: PlanRun, seconds: float) -> bool:
    finished = row.finished_at or row.updated_at
    return finished is not None and (utcnow() - finished).total_seconds() > seconds


@asynccontextmanager
async def plans_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """After the gateway and chat parts: runs need the quota and credit services and
    the plan service. Runs still going when the server drains end as failed."""
    runs = PlanRuns(
        db=app.state.db,
        settings=settings,
        tiers=app.state.tiers,
        quotas=app.state.gateway.quotas,
        credits=app.state.gateway.credits,
        plans=app.state.chat_plans,
    )
    app.state.plan_runs = runs
    shutdown: GracefulShutdown | None = getattr(app.state, "shutdown", None)

    async def stop_on_drain(signal: GracefulShutdown) -> None:
        await signal.wait()
        await runs.stop()

    watcher = asyncio.create_task(stop_on_drain(shutdown)) if shutdown is not None else None
    interval = max(1.0, settings.LEASE_TTL_SECONDS / 3)
    try:
        async with supervised("plan run housekeeping", runs.housekeeping, interval):
            yield
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await runs.stop()
