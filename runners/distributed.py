"""Where this training process stands in a distributed run: the `World` value, read once from the
launcher's environment, and what each rank may do with the job's files.

One code path whatever the launcher: `torchrun` (the local backend runs `python -m
torch.distributed.run`), `accelerate launch` (which starts its processes through torchrun) and the
CML workers (each worker runs torchrun with its node rank and the master's address) all set the
same variables: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
MASTER_PORT. A process started without a launcher is a world of one.

What ranks do, decided here so train.py reads as one program:
- rank 0 alone writes the job's `result.json` and `progress.json`, logs to MLflow and saves the
  adapter; every other rank writes its own `result.rank<R>.json` / `progress.rank<R>.json` beside
  them (`rank_path`), so a failing rank's error class is never lost and every rank reports progress
  (backends read the job's result from them all: `reconciler.scaleout.job_result`);
- under a launcher, a rank dies with its launcher (`die_with_launcher`): no rank outlives a
  launcher that was killed.

Stdlib only (imported by jobio before any ML import); `init_process_group` imports torch when called.
Never imports ftctl.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

# How long ranks wait for each other to join, and in each collective, before failing as `transient`.
INIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place in the run: its global and local rank, the sizes, and the rendezvous."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "none"  # none | torchrun | accelerate

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> World:
        """The world the launcher describes in the environment (torchrun's variables, which accelerate
        launch and the CML workers set too); a world of one without a launcher."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return cls()

        def number(*names: str, default: int) -> int:
            for name in names:
                if env.get(name, "").strip().lstrip("-").isdigit():
                    return int(env[name])
            return default

        world_size = number("WORLD_SIZE", default=1)
        return cls(
            rank=number("RANK", default=0),
            local_rank=number("LOCAL_RANK", default=0),
            world_size=world_size,
            local_world_size=number("LOCAL_WORLD_SIZE", default=world_size),
            node_rank=number("GROUP_RANK", "NODE_RANK", default=0),
            master_addr=env.get("MASTER_ADDR") or "127.0.0.1",
            master_port=number("MASTER_PORT", default=29500),
            launcher="accelerate" if any(k.startswith("ACCELERATE_") for k in env) else "torchrun",
        )

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the job's result, logs to MLflow and saves the adapter."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def backend(self, *, has_gpu: bool) -> str:
        """The torch.distributed backend: NCCL between GPUs, gloo on CPU."""
        return "nccl" if has_gpu else "gloo"

    def rank_path(self, path: str | Path) -> Path:
        """Where this rank writes one of the job's files: the file itself on rank 0, else
        `<name>.rank<R><suffix>` beside it (`progress.json` -> `progress.rank1.json`)."""
        path = Path(path)
        if self.is_main:
            return path
        return path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")

    def describe(self) -> str:
        return (f"rank {self.rank}/{self.world_size} (node {self.node_rank}, local rank {self.local_rank} of "
                f"{self.local_world_size}) via {self.launcher}, master {self.master_addr}:{self.master_port}")


def init_process_group(world: World, *, has_gpu: bool) -> None:
    """Join the run's process group (gloo on CPU, NCCL on GPU) before the Trainer is made, so every
    rank fails early and together when one cannot join. Nothing to do in a world of one."""
    if not world.is_distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if has_gpu:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=world.backend(has_gpu=has_gpu), timeout=timedelta(seconds=INIT_TIMEOUT_S))


def barrier(world: World) -> None:
    """Wait for every rank (rank 0 may be creating the MLflow experiment); nothing in a world of one."""
    if world.is_distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def close_process_group(world: World) -> None:
    if world.is_distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def die_with_launcher(world: World) -> None:
    """Under a launcher, have the kernel kill this rank when its parent (the launcher) dies: torchrun
    starts each rank in a session of its own, so a launcher killed by SIGKILL would otherwise leave
    its ranks running. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing."""
    if not world.is_distributed or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
