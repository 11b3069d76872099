"""Run by test_trainer.py under torchrun: a few DMD2 steps on the toy, sharded over the ranks."""

import os
import sys
from pathlib import Path

import torch

from seed_distill import toy
from seed_distill.methods import Options
from seed_distill.trainer import RunConfig, distill, exit_rank, init_world, leave_world, recipe_stages


def run(out: Path, fsdp: bool = False, stop_after: int | None = None, resume: bool = False) -> None:
    torch.set_num_threads(1)
    mix = toy.ring()
    target = toy.ToyTarget(toy.train_teacher(mix, steps=50, batch=64), mix, guidance=2.0)
    world = init_world()
    try:
        distill(
            target,
            out,
            recipe_stages(os.environ.get("METHOD", "adm"), None),
            Options(steps=2, lr=1e-3, ratio=2),
            RunConfig(steps=6, batch=16, shards=2, checkpoint_every=3, fsdp=fsdp),
            world=world,
            stop_after=stop_after,
            resume=resume,
        )
    except BaseException:
        leave_world(world, failed=True)
        raise
    leave_world(world)
    exit_rank()


if __name__ == "__main__":
    flags = sys.argv[2:]
    stop = next((int(f.split("=")[1]) for f in flags if f.startswith("--stop-after=")), None)
    run(Path(sys.argv[1]), fsdp="--fsdp" in flags, stop_after=stop, resume="--resume" in flags)
