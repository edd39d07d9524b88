"""The Prometheus metrics: runs on the twins counted by outcome, steps timed, the store read at
each scrape, Slack errors counted, and the text a scraper reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from wsgiref.util import setup_testing_defaults

from prometheus_client.parser import text_string_to_metric_families

from adapters.memory.store import MemoryRunStore
from adapters.prometheus_metrics import PrometheusMetrics
from bot.domain.run import Phase, Run, RunState, StepStatus
from bot.engine.planning import UpgradeRequest
from tests.factories import AT, make_plan, make_result
from tests.unit.memory_world import MemoryWorld, myst_world, phased_world

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
FINISHED = "upgradebot_runs_finished_total"
STEPS = "upgradebot_step_duration_seconds"


def _approved(world: MemoryWorld, strategy: str | None = None) -> int:
    request = UpgradeRequest(product="myst", version="3.9.1", strategy=strategy)
    run = world.store.create(world.planner().build(request), requested_by="U1", at=NOW)
    for before, after in (
        (RunState.PLANNED, RunState.AWAITING_APPROVAL),
        (RunState.AWAITING_APPROVAL, RunState.APPROVED),
    ):
        world.store.transition(run.id, before, after, at=NOW, actor="U2")
    return run.id


def _value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _waiting(store: MemoryRunStore, count: int) -> list[Run]:
    runs = []
    for _ in range(count):
        run = store.create(make_plan(), requested_by="U1", at=NOW)
        runs.append(
            store.transition(
                run.id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=NOW, actor="U1"
            )
        )
    return runs


def test_a_clean_run_is_counted_as_succeeded_with_each_of_its_steps():
    world = myst_world()
    metrics = PrometheusMetrics(world.store)
    run = world.runner(metrics).execute(_approved(world), actor="bot")
    assert run.state is RunState.SUCCEEDED
    labels = {"product": "myst-studio", "strategy": run.plan.strategy}
    assert _value(metrics, FINISHED, **labels, outcome="succeeded") == 1
    assert _value(metrics, FINISHED, **labels, outcome="failed") is None
    for step in world.store.steps(run.id):
        counted = _value(
            metrics,
            f"{STEPS}_count",
            product="myst-studio",
            phase="upgrade",
            step=step.step_id,
            status="succeeded",
        )
        assert counted == 1, step.step_id


def test_a_failed_backup_counts_the_rollback_outcome_and_the_failed_step():
    world = myst_world()
    world.http.set_page("http://myst-prod.test/console/", "<footer>Version 3.9.0.3</footer>")
    world.shell.on(r"/bin/backup-database\.sh", stderr="pg_dump: connection refused\n", exit_code=1)
    metrics = PrometheusMetrics(world.store)
    run = world.runner(metrics).execute(_approved(world), actor="bot")
    assert run.state is RunState.ROLLED_BACK
    strategy = run.plan.strategy
    assert (
        _value(metrics, FINISHED, product="myst-studio", strategy=strategy, outcome="rolled_back")
        == 1
    )
    assert (
        _value(metrics, FINISHED, product="myst-studio", strategy=strategy, outcome="failed")
        is None
    )
    step = {"product": "myst-studio", "step": "backup"}
    assert _value(metrics, f"{STEPS}_count", **step, phase="upgrade", status="failed") == 1
    assert _value(metrics, f"{STEPS}_count", **step, phase="upgrade", status="succeeded") is None
    rollback = {"product": "myst-studio", "phase": "rollback", "status": "succeeded"}
    assert _value(metrics, f"{STEPS}_count", **rollback, step="retag-previous") == 1


def test_a_run_at_a_gate_is_not_finished_and_waits_for_approvers_at_the_gate():
    world = phased_world()
    metrics = PrometheusMetrics(world.store)
    run = world.runner(metrics).execute(_approved(world, "phased"), actor="bot")
    assert run.state is RunState.WAITING
    assert list(metrics.registry.collect())  # a scrape
    assert (
        _value(metrics, FINISHED, product="myst-studio", strategy="phased", outcome="waiting")
        is None
    )
    assert _value(metrics, "upgradebot_approvals_waiting", stage="gate") == 1
    assert _value(metrics, "upgradebot_approvals_waiting", stage="plan") == 0
    assert _value(metrics, "upgradebot_runs_in_progress", state="waiting") == 1
    assert _value(metrics, "upgradebot_runs_in_progress", state="running") == 0


def test_step_durations_fall_in_their_buckets():
    metrics = PrometheusMetrics(MemoryRunStore())
    run = Run(
        id=3,
        plan=make_plan(),
        state=RunState.RUNNING,
        requested_by="U1",
        created_at=AT,
        updated_at=AT,
    )
    metrics.step_finished(run, make_result(run_id=3, finished_at=AT + timedelta(seconds=12.5)))
    metrics.step_finished(run, make_result(run_id=3, finished_at=None))  # not finished: not timed
    labels = {"product": "myst-studio", "phase": "upgrade", "step": "backup", "status": "succeeded"}
    assert _value(metrics, f"{STEPS}_count", **labels) == 1
    assert _value(metrics, f"{STEPS}_sum", **labels) == 12.5
    assert _value(metrics, f"{STEPS}_bucket", **labels, le="10.0") == 0
    assert _value(metrics, f"{STEPS}_bucket", **labels, le="30.0") == 1


def test_approvals_waiting_are_read_from_the_store_at_each_scrape_by_every_process():
    store = MemoryRunStore()
    one, two = PrometheusMetrics(store), PrometheusMetrics(store)  # two bots, one database
    runs = _waiting(store, 3)
    assert _value(one, "upgradebot_approvals_waiting", stage="plan") == 3
    store.transition(runs[0].id, RunState.AWAITING_APPROVAL, RunState.REJECTED, at=NOW, actor="U2")
    assert _value(one, "upgradebot_approvals_waiting", stage="plan") == 2
    assert _value(two, "upgradebot_approvals_waiting", stage="plan") == 2


def test_the_lease_gauge_says_whether_this_process_schedules():
    since: list[datetime | None] = [None]
    metrics = PrometheusMetrics(MemoryRunStore(), lease_since=lambda: since[0])
    assert _value(metrics, "upgradebot_scheduler_lease_held") == 0
    since[0] = NOW
    assert _value(metrics, "upgradebot_scheduler_lease_held") == 1
    assert _value(PrometheusMetrics(MemoryRunStore()), "upgradebot_scheduler_lease_held") is None


def test_slack_errors_are_counted_by_method_and_error():
    metrics = PrometheusMetrics(MemoryRunStore())
    metrics.slack_error("chat.postMessage", "channel_not_found")
    metrics.slack_error("chat.postMessage", "channel_not_found")
    metrics.slack_error("chat.update", "unreachable")
    errors = "upgradebot_slack_api_errors_total"
    assert _value(metrics, errors, method="chat.postMessage", error="channel_not_found") == 2
    assert _value(metrics, errors, method="chat.update", error="unreachable") == 1


def test_the_wsgi_app_serves_the_text_format_with_bounded_labels():
    world = myst_world()
    metrics = PrometheusMetrics(world.store)
    world.runner(metrics).execute(_approved(world), actor="bot")
    environ: dict[str, object] = {"PATH_INFO": "/metrics"}
    setup_testing_defaults(environ)
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(
        metrics.wsgi_app()(environ, lambda status, headers: answered.append((status, headers)))
    )
    [(status, headers)] = answered
    assert status == "200 OK"
    assert dict(headers)["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "upgradebot_runs_finished",
        "upgradebot_step_duration_seconds",
        "upgradebot_slack_api_errors",
        "upgradebot_approvals_waiting",
        "upgradebot_runs_in_progress",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
    labels = {key for f in families.values() for s in f.samples for key in s.labels}
    assert labels <= {
        "product",
        "strategy",
        "outcome",
        "phase",
        "step",
        "status",
        "le",
        "method",
        "error",
        "stage",
        "state",
    }
    assert StepStatus.SUCCEEDED.value in {
        s.labels.get("status") for s in families["upgradebot_step_duration_seconds"].samples
    }
    assert Phase.UPGRADE.value in {
        s.labels.get("phase") for s in families["upgradebot_step_duration_seconds"].samples
    }
