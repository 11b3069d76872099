"""Run by test_trainer.py under torchrun: a few DMD2 steps on the toy, sharded over the ranks."""

import sys
from pathlib import Path

import torch

from seed_distill import toy
from seed_distill.methods import Options
from seed_distill.trainer import RunConfig, distill, init_world, recipe_stages


def run(out: Path) -> None:
    torch.set_num_threads(1)
    mix = toy.ring()
    target = toy.ToyTarget(toy.train_teacher(mix, steps=50, batch=64), mix, guidance=2.0)
    distill(
        target,
        out,
        recipe_stages("adm", None),
        Options(steps=2, lr=1e-3, ratio=2),
        RunConfig(steps=6, batch=16, shards=2, checkpoint_every=3),
        world=init_world(),
    )


if __name__ == "__main__":
    run(Path(sys.argv[1]))
