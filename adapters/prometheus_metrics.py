"""`PrometheusMetrics`: what an operator graphs and alerts on, served at `/metrics`.

Two kinds of figures. Events this process saw are counted as they happen: the runs it executed,
by how they ended; how long each step took; the Slack Web API errors it got. The state of the
database is read at each scrape, so two bot processes on one database report the same: the
approvals waiting and the runs holding an instance. Besides, whether this process holds the
scheduling lease, and the usual `process_*` figures.

Each bot has a registry of its own (not prometheus_client's global one), so several bots can live
in one process. Labels take few values: product, strategy, phase, step id, outcome, state, and
Slack's method and error code; never a run id, a user or a host name.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from bot.domain.errors import OperationalError
from bot.domain.plan import PlannedStep
from bot.domain.ports import RunStore
from bot.domain.run import ACTIVE_STATES, Phase, Run, RunState, StepResult

log = logging.getLogger(__name__)

# From a quick check (a second) to a long backup or database migration (an hour).
STEP_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Open runs read at a scrape: far above any real backlog, and still one bounded query.
SCRAPE_LIMIT = 10_000
APPROVAL_STAGES = {RunState.AWAITING_APPROVAL: "plan", RunState.WAITING: "gate"}

WsgiApp = Callable[..., Iterable[bytes]]


class PrometheusMetrics:
    """A `RunObserver` of every run the service executes, and the counter of Slack API errors
    (`slack_error`, given to the Slack chat as its `on_error`). Never raises into its callers."""

    def __init__(
        self, runs: RunStore, *, lease_since: Callable[[], datetime | None] | None = None
    ) -> None:
        """`runs` is read at each scrape; `lease_since` (the scheduler's `on_duty_since`) says
        whether this process schedules."""
        self.registry = CollectorRegistry()
        self._finished = Counter(
            "upgradebot_runs_finished",
            "Runs this process executed to their end, by outcome (the run's final state).",
            ["product", "strategy", "outcome"],
            registry=self.registry,
        )
        self._steps = Histogram(
            "upgradebot_step_duration_seconds",
            "How long each step took, by product, phase, step id and status.",
            ["product", "phase", "step", "status"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self._slack_errors = Counter(
            "upgradebot_slack_api_errors",
            "Slack Web API calls that failed, by method and Slack's error code "
            "('unreachable' when Slack could not be reached).",
            ["method", "error"],
            registry=self.registry,
        )
        if lease_since is not None:
            held = Gauge(
                "upgradebot_scheduler_lease_held",
                "1 while this process holds the scheduling lease (it runs scheduled jobs), else 0.",
                registry=self.registry,
            )
            held.set_function(lambda: 0.0 if lease_since() is None else 1.0)
        self.registry.register(_OpenRuns(runs))
        ProcessCollector(registry=self.registry)

    def wsgi_app(self) -> WsgiApp:
        """The registry in Prometheus' text format (or OpenMetrics, if the scraper asks)."""
        app: WsgiApp = make_wsgi_app(self.registry)
        return app

    # -- Slack ----------------------------------------------------------------------------------

    def slack_error(self, method: str, error: str) -> None:
        self._slack_errors.labels(method=method, error=error).inc()

    # -- RunObserver ----------------------------------------------------------------------------

    def step_finished(self, run: Run, result: StepResult) -> None:
        if result.duration is None:
            return
        self._steps.labels(
            product=run.plan.product,
            phase=result.phase.value,
            step=result.step_id,
            status=result.status.value,
        ).observe(max(result.duration, 0.0))

    def finished(self, run: Run) -> None:
        if run.state is RunState.WAITING:
            return  # paused at a gate: it ends, and is counted, after the approver's word
        self._finished.labels(
            product=run.plan.product, strategy=run.plan.strategy, outcome=run.state.value
        ).inc()

    def state_changed(self, run: Run, reason: str) -> None:
        pass

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        pass

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None:
        pass

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        pass


class _OpenRuns:
    """Approvals waiting and runs holding an instance, as the database has them at the scrape."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    def describe(self) -> Iterator[Metric]:
        yield from self._families(Tally())

    def collect(self) -> Iterator[Metric]:
        states = (*APPROVAL_STAGES, *sorted(ACTIVE_STATES))
        try:
            found = self._runs.runs(states=states, limit=SCRAPE_LIMIT)
        except OperationalError as exc:
            # The rest of the scrape still counts; /readyz says what is wrong with the database.
            log.warning("metrics: the open runs could not be read: %s", exc)
            return
        yield from self._families(Tally(run.state for run in found))

    @staticmethod
    def _families(counts: Tally[RunState]) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "upgradebot_approvals_waiting",
            "Runs waiting for approvers: of their plan (stage=plan) or at a gate (stage=gate).",
            labels=["stage"],
        )
        for state, stage in APPROVAL_STAGES.items():
            waiting.add_metric([stage], counts[state])
        yield waiting
        active = GaugeMetricFamily(
            "upgradebot_runs_in_progress",
            "Runs holding their instance, by state (interrupted ones wait for a decision).",
            labels=["state"],
        )
        for state in sorted(ACTIVE_STATES):
            active.add_metric([state.value], counts[state])
        yield active
