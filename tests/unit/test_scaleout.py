"""reconciler.scaleout: a job's world from its resources, and its result from its ranks' results."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.scaleout import MASTER_VERDICT, job_result, topology
from runners import cml_workers


@pytest.mark.parametrize(("resources", "workers", "per_worker", "world"), [
    (None, 1, 1, 1),
    ({"cpu": 2, "memory": 8, "gpu": 0}, 1, 1, 1),
    ({"gpu": 1}, 1, 1, 1),
    ({"gpu": 4}, 1, 4, 4),
    ({"gpu": 0, "num_workers": 2}, 2, 1, 2),
    ({"gpu": 2, "num_workers": 3}, 3, 2, 6),
    ({"gpu": None, "num_workers": None}, 1, 1, 1),
])
def test_world(resources: dict[str, Any] | None, workers: int, per_worker: int, world: int) -> None:
    found = topology(resources)
    assert (found.workers, found.processes_per_worker, found.world_size) == (workers, per_worker, world)


def test_other_workers_default_to_the_first_ones_resources() -> None:
    world = topology({"cpu": 4, "memory": 16, "gpu": 2, "num_workers": 3, "dist_memory": 32})
    assert (world.others.cpu, world.others.memory, world.others.gpu) == (4, 32, 2)
    assert world.describe() == "world 6 (3 workers x 2 processes); worker 0: 4 cpu, 16 GB, 2 gpu; workers 1-2: 4 cpu, 32 GB, 2 gpu each"
    assert world.as_dict()["world_size"] == 6 and world.as_dict()["other_workers"]["memory"] == 32
    assert topology({"cpu": 2, "memory": 8}).describe() == "world 1 (1 worker x 1 process); 2 cpu, 8 GB"


def result(status: str, error_class: str = "", at: float = 0.0) -> dict[str, Any]:
    error = {"error_class": error_class, "type": "X", "message": error_class} if error_class else None
    return {"status": status, "error": error, "finished_at": at, "metrics": {}, "artifacts": {}}


def test_job_result_of_its_ranks() -> None:
    ok = result("succeeded")
    assert job_result({0: ok, 1: ok}, 2) is ok  # every rank succeeded: rank 0's
    assert job_result({0: None, 1: None}, 2) is None  # nothing written: the backend says killed
    data = result("failed", "data", at=5.0)
    stopped = result("failed", "cancelled", at=6.0)
    assert job_result({0: stopped, 1: data}, 2) is data  # a rank's own failure, not its launcher's stop
    first = result("failed", "resources", at=4.0)
    assert job_result({0: data, 1: first}, 2) is first  # the earliest own failure
    killed = job_result({0: stopped, 1: None}, 2)
    assert killed is not None and killed["error"]["error_class"] == "killed" and "rank 1 of 2" in killed["error"]["message"]
    assert job_result({0: stopped, 1: stopped}, 2) is stopped  # all stopped together (ftctl cancel): cancelled
    lost = job_result({0: result("failed", "transient", at=7.0), 1: None}, 2)  # rank 0 saw its peer's connection break
    assert lost is not None and lost["error"]["error_class"] == "killed"
    assert job_result({0: ok, 1: None}, 2) is ok  # rank 0 finished: a rank without a result changed nothing


def test_the_cml_masters_verdict_is_the_jobs_result() -> None:
    """The master of a CML scale-out writes its verdict in rank 0's place after stopping every node:
    it names the CML worker that died (its logs are under that id), or says the job was stopped."""
    lost = {**result("failed", at=3.0), "error": {"error_class": "killed", "type": MASTER_VERDICT,
                                                  "message": "CML worker w-1 (node 1 of 2) ended without a result"}}
    assert job_result({0: lost, 1: None}, 2) is lost
    stopped = {**result("failed", at=3.0), "error": {"error_class": "cancelled", "type": MASTER_VERDICT, "message": "stopped"}}
    assert job_result({0: stopped, 1: None}, 2) is stopped  # a cancel stays a cancel: no retry of what the user stopped
    assert job_result({0: stopped, 1: result("failed", "data", at=1.0)}, 2) is stopped  # the master decided, having seen every node
    assert MASTER_VERDICT == cml_workers.VERDICT_TYPE  # the runner never imports ftctl: one string on each side


def test_the_plan_shows_the_world_a_training_launch_asks_for() -> None:
    from reconciler.plan import Action, Change, Consequence, Launch, Plan
    from reconciler.views.plan import render_plan

    def plan(resources: dict[str, Any]) -> Plan:
        launch = Launch("ft-job-1-abcdef12", "train", 1, {"resources": resources})
        change = Change("FineTuningJob", "job", Action.CREATE, "new", Consequence.LAUNCH, launches=(launch,))
        return Plan("sqlite:///state.db", 1, {}, changes=(change,))

    scaled = plan({"cpu": 4, "memory": 16, "gpu": 2, "num_workers": 2, "dist_cpu": 8})
    words = "world 4 (2 workers x 2 processes); worker 0: 4 cpu, 16 GB, 2 gpu; worker 1: 8 cpu, 16 GB, 2 gpu"
    assert f"=> launches job ft-job-1-abcdef12 (attempt 1) on {words}" in render_plan("text", scaled)
    assert f"launches `ft-job-1-abcdef12` on {words}" in render_plan("markdown", scaled)
    assert '"num_workers": 2' in render_plan("json", scaled)  # the plan file carries the resources as data
    single = plan({"cpu": 2, "memory": 8, "gpu": 1, "num_workers": 1})
    assert "world" not in render_plan("text", single) and "world" not in render_plan("markdown", single)
