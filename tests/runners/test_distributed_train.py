"""runners/distributed.py and the train runner's scale-out checks, in-process (no ML import needed
except where marked). The real 2-process trainings, under the local backend's torchrun, are
tests/e2e/test_local_distributed.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runners import train as runner
from runners.distributed import World
from tests.runners.helpers import needs_ml, read_job_files, run_runner

TORCHRUN_ENV = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0",
                "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400"}


def test_a_process_without_a_launcher_is_a_world_of_one() -> None:
    world = World.from_environ({})
    assert (world.rank, world.world_size, world.is_main, world.is_distributed, world.launcher) == (0, 1, True, False, "none")
    assert world.rank_path("/j/result.json") == Path("/j/result.json")


def test_the_launchers_environment_is_one_world_whoever_launched() -> None:
    torchrun = World.from_environ(TORCHRUN_ENV)
    accelerate = World.from_environ({**TORCHRUN_ENV, "ACCELERATE_MIXED_PRECISION": "no"})
    assert (torchrun.rank, torchrun.local_rank, torchrun.world_size, torchrun.local_world_size) == (1, 1, 4, 2)
    assert (torchrun.master_addr, torchrun.master_port, torchrun.launcher) == ("10.0.0.5", 29400, "torchrun")
    assert accelerate.launcher == "accelerate" and accelerate.rank == torchrun.rank
    assert torchrun.is_distributed and not torchrun.is_main
    assert torchrun.backend(has_gpu=False) == "gloo" and torchrun.backend(has_gpu=True) == "nccl"
    assert World.from_environ({**TORCHRUN_ENV, "GROUP_RANK": "", "NODE_RANK": "1"}).node_rank == 1


def test_other_ranks_write_their_files_beside_the_jobs() -> None:
    world = World.from_environ(TORCHRUN_ENV)
    assert world.rank_path("/j/result.json") == Path("/j/result.rank1.json")
    assert world.rank_path("/j/progress.json") == Path("/j/progress.rank1.json")


@pytest.mark.parametrize(("args", "bnb", "has_gpu", "gpus", "error_class"), [
    ({"fsdp": "full_shard"}, None, False, None, "unsupported"),  # FSDP shards across GPUs
    ({"fsdp": "full_shard"}, {"load_in_4bit": True}, True, 8, "config"),  # uint8 weights FSDP cannot flatten
    ({"fsdp": "full_shard", "deepspeed": "ds.json"}, None, True, 8, "config"),
    ({}, None, True, 1, "resources"),  # 2 local processes, 1 GPU
])
def test_what_cannot_run_fails_before_training(args: dict, bnb: dict | None, has_gpu: bool, gpus: int | None,
                                               error_class: str) -> None:
    world = World.from_environ({**TORCHRUN_ENV, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    with pytest.raises(runner.JobFailure) as info:
        runner.check_hardware(args, bnb, has_gpu=has_gpu, world=world, gpus=gpus)
    assert info.value.error_class == error_class


def test_what_can_run_passes() -> None:
    world = World.from_environ({**TORCHRUN_ENV, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    runner.check_hardware({"fsdp": "full_shard"}, {"load_in_4bit": True, "bnb_4bit_quant_storage": "bfloat16"},
                          has_gpu=True, world=world, gpus=2)
    runner.check_hardware({}, None, has_gpu=False, world=world)  # data-parallel on CPU: gloo


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_deepspeed_without_deepspeed_is_a_dependency_error() -> None:
    with pytest.raises(runner.JobFailure) as info:
        runner.check_dependencies({"deepspeed": "ds.json"}, None)
    assert info.value.error_class == "dependency"


@needs_ml[0]
@needs_ml[1]
def test_a_rank_of_an_axolotl_job_refuses_before_anything_loads(write_job) -> None:  # type: ignore[no-untyped-def]
    job_path = write_job(train={"framework_type": "axolotl", "axolotl_config": {"adapter": "lora"}})
    proc = run_runner("train", job_path, env={**TORCHRUN_ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    result, _ = read_job_files(job_path)
    assert result is not None, proc.stderr[-3000:]
    assert result["error"]["error_class"] == "unsupported" and "axolotl" in result["error"]["message"]
