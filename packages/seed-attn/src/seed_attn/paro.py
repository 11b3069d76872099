"""PAROAttention: per-head token reordering + static block masks + low-bit attention.

Calibration (offline, a few prompts) watches every attention call of the backbone and, for each
(layer, head), measures the post-softmax map P block by block under each axis order of the image grid (2
orders for images: rows-first "hw" and columns-first "wh"; 6 for video grids), streamed over query chunks so
no full map is kept. It keeps, per order:

- the sparse metric: the share of blocks in which at least `sigma` of the entries are below `eps`;
- the quantization metric: the mean over blocks of the incoherence max|P| / mean|P|;
- the attention mass of every block, per timestep group.

The order of a head minimises ``alpha * (1 - S_o / sum S) + (1 - alpha) * Q_o / sum Q`` (S: sparse metric,
Q: quantization metric, normalised over the candidate orders). The paper writes the first term as S and
takes the argmin, which would reward *fewer* sparse blocks; we use the sign that matches its intent.

`order_score="error"` instead measures what the orders are for: a second pass over the same prompts runs,
per (layer, head) and order, the attention the plan would run (that order's masks at the calibrated
density, its bits) beside exact attention, and keeps the order with the smallest relative output error
``sum |O - O_exact|^2 / sum |O_exact|^2`` over the calls. On seedream-mini the paper's score chose, for
one head, the order whose output error at density 0.3 is 3x the other's (0.26 against 0.08), which cost
1.3 dB of image PSNR against dense; yet orders chosen by this error measured lower prompt accuracy there
(a mean over tokens misses the border tokens the analyzer reads): a measured option, not the default
(benchmarks/RESULTS.md, session 27). `orders` (`seed calibrate --orders-from`) keeps given orders.

At run time, the masks of a density D keep, per (timestep group, layer, head), the blocks with the most
mass per query row until D of all blocks are kept, after the forced ones: every block that holds text
tokens (rows and columns) and the diagonal. The plan stores the masses, so any density is built from one
calibration.

Timestep groups are equal spans of flow time (each with its own masses); the plan records the sampling
steps calibration saw, and a density *schedule* gives each of those steps its own density
(`--accel paro:schedule=0.2/0.4`: noise to clean; each step's masks come from its group's masses, and a
call runs the masks of the calibrated step nearest its time), e.g. more blocks for the step that writes
the output at the cost of the one before it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from seed_attn.sparse import BlockLists
from seed_core.errors import AcceleratorError

ORDERS: dict[int, tuple[str, ...]] = {2: ("hw", "wh"), 3: ("fhw", "fwh", "hwf", "hfw", "whf", "wfh")}


def order_permutation(grid: tuple[int, ...], order: str) -> torch.Tensor:
    """(prod(grid),) original indices of the grid tokens in the new order (row-major = identity)."""
    axes = "fhw"[-len(grid) :]
    idx = torch.arange(math.prod(grid)).view(grid)
    return idx.permute([axes.index(a) for a in order]).reshape(-1)


def sequence_permutation(prefix: int, grid: tuple[int, ...], length: int, order: str) -> torch.Tensor:
    """(length,) permutation of a whole sequence: the prefix (text) and anything after the grid stay."""
    n = math.prod(grid)
    return torch.cat(
        (
            torch.arange(prefix),
            prefix + order_permutation(grid, order),
            torch.arange(prefix + n, length),
        )
    )


def timestep_group(t: float, groups: int) -> int:
    """The timestep group of flow time t (1 = noise): equal bins from noise to clean. Calibration files
    its statistics and run time finds its masks with this one rule."""
    return min(max(int((1.0 - t) * groups), 0), groups - 1)


class PlanError(AcceleratorError):
    """A missing or mismatched PARO plan (one line for the user, exit code 2)."""


@dataclass
class ParoPlan:
    """A calibrated plan for one model at one sequence layout (one resolution)."""

    model: str
    prefix: int
    grid: tuple[int, ...]
    length: int
    block: int
    orders: torch.Tensor  # (layers, heads) int64, index into ORDERS[len(grid)]
    mass: torch.Tensor  # (groups, layers, heads, nQb, nKb) float32: block attention mass, chosen orders
    mass_identity: torch.Tensor  # the same without reordering (for the ablation `reorder=false`)
    density: float = 0.3  # what `seed calibrate` was asked for: the defaults of --accel paro
    bits: int = 8
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> int:
        return int(self.mass.shape[0])

    @property
    def layers(self) -> int:
        return int(self.orders.shape[0])

    @staticmethod
    def file_stem(prefix: int, grid: tuple[int, ...], length: int) -> str:
        return f"{'x'.join(map(str, grid))}-t{prefix}-l{length}"

    def save(self, directory: Path, force: bool = False) -> Path:
        from seed_core.files import atomic_write_bytes
        from seed_core.weights import save_safetensors

        directory.mkdir(parents=True, exist_ok=True)
        stem = self.file_stem(self.prefix, self.grid, self.length)
        save_safetensors(
            {"orders": self.orders, "mass": self.mass, "mass_identity": self.mass_identity},
            directory / f"{stem}.safetensors",
            dtype=None,
            force=force,
        )
        info = {k: v for k, v in asdict(self).items() if k not in ("orders", "mass", "mass_identity")}
        atomic_write_bytes(
            directory / f"{stem}.json", (json.dumps(info, indent=2) + "\n").encode(), force=force
        )
        return directory / f"{stem}.json"

    @classmethod
    def load(cls, json_path: Path) -> ParoPlan:
        from seed_core.weights import load_safetensors

        try:
            info = json.loads(json_path.read_text())
            fields = {"model", "prefix", "grid", "length", "block", "density", "bits", "meta"}
            if (
                not isinstance(info, dict)
                or set(info) - fields
                or not {"prefix", "grid", "length", "block"} <= set(info)
            ):
                raise ValueError(
                    f"keys {sorted(info) if isinstance(info, dict) else info!r}, expected {sorted(fields)}"
                )
            info["grid"] = tuple(int(g) for g in info["grid"])
            for key in ("prefix", "length", "block", "bits"):  # numbers the masks are computed from
                if key in info and (not isinstance(info[key], int) or isinstance(info[key], bool)):
                    raise ValueError(f"{key} {info[key]!r} is not a whole number")
            if "density" in info and not (
                isinstance(info["density"], (int, float)) and 0 < info["density"] <= 1
            ):
                raise ValueError(f"density {info['density']!r} is not in (0, 1]")
        except (OSError, ValueError, TypeError) as exc:
            raise PlanError(f"{json_path}: not a PARO plan ({exc}); re-run `seed calibrate`") from None
        tensors = load_safetensors(json_path.with_suffix(".safetensors"))
        for key in ("orders", "mass", "mass_identity"):
            if key not in tensors:
                raise PlanError(f"{json_path.with_suffix('.safetensors')}: missing tensor '{key}'")
        plan = cls(**info, **{k: tensors[k] for k in ("orders", "mass", "mass_identity")})
        if len(plan.grid) not in ORDERS or plan.block <= 0 or plan.mass.ndim != 5 or plan.mass.shape[0] < 1:
            raise PlanError(f"{json_path}: grid {plan.grid}, block {plan.block} or mass shape is not usable")
        if plan.orders.numel() and not 0 <= int(plan.orders.min()) <= int(plan.orders.max()) < len(
            ORDERS[len(plan.grid)]
        ):
            raise PlanError(f"{json_path}: orders outside 0..{len(ORDERS[len(plan.grid)]) - 1}")
        n_q = math.ceil(plan.length / plan.block)
        expected = (plan.orders.shape[0], plan.orders.shape[1], n_q, n_q)
        if tuple(plan.mass.shape[1:]) != expected or plan.mass.shape != plan.mass_identity.shape:
            raise PlanError(
                f"{json_path}: mass has shape {tuple(plan.mass.shape)}, expected (groups, {expected})"
            )
        return plan

    def steps(self) -> list[float]:
        """The flow times of the sampling steps calibration saw, noise to clean (empty for a plan that
        does not record them)."""
        times = self.meta.get("times")
        return sorted({float(t) for ts in times for t in ts}, reverse=True) if isinstance(times, list) else []

    def visited_groups(self) -> list[int]:
        """The timestep groups calibration saw steps in (all of them for a plan without its times)."""
        steps = self.steps()
        return sorted({self.group_of(t) for t in steps}) if steps else list(range(self.groups))

    def block_masks(self, density: float, reorder: bool = True) -> torch.Tensor:
        """(groups, layers, heads, nQb, nKb) bool masks keeping `density` of the blocks (see module doc)."""
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density}")
        mass = (self.mass if reorder else self.mass_identity).float()
        n = mass.shape[-1]
        forced = torch.zeros(n, n, dtype=torch.bool)
        text_blocks = math.ceil(self.prefix / self.block)
        forced[:text_blocks] = True
        forced[:, :text_blocks] = True
        forced |= torch.eye(n, dtype=torch.bool)
        keep = max(round(density * n * n), int(forced.sum()))
        # ranked by mass per query row: a partial last query block holds fewer rows, and ranking by its
        # blocks' total mass starved it (its tokens kept 9-30% of their attention in some heads)
        rows = torch.full((n,), float(self.block))
        rows[-1] = self.length - (n - 1) * self.block
        score = (mass / rows[:, None]).masked_fill(forced, float("inf")).flatten(-2)  # forced rank first
        top = score.topk(keep, dim=-1).indices
        masks = torch.zeros_like(score, dtype=torch.bool).scatter(-1, top, True)
        return masks.view(mass.shape)

    def step_masks(self, schedule: Sequence[float], reorder: bool = True) -> torch.Tensor:
        """(steps, layers, heads, nQb, nKb): one density per calibrated sampling step, noise to clean, each
        step's masks built from its timestep group's masses."""
        steps = self.steps()
        if len(schedule) != len(steps):
            seen = " / ".join(f"{t:g}" for t in steps) if steps else "none recorded: re-run `seed calibrate`"
            raise PlanError(
                f"paro: the schedule gives {len(schedule)} densities, but the plan for grid "
                f"{'x'.join(map(str, self.grid))} was calibrated on {len(steps)} sampling steps (t {seen}); "
                f"give {len(steps)} densities separated by '/', noise to clean"
            )
        by_density = {d: self.block_masks(d, reorder) for d in set(schedule)}
        return torch.stack([by_density[d][self.group_of(t)] for d, t in zip(schedule, steps, strict=True)])

    def group_of(self, t: float) -> int:
        return timestep_group(t, self.groups)


def find_plan(directory: Path, prefix: int, grid: tuple[int, ...], length: int) -> Path | None:
    path = directory / f"{ParoPlan.file_stem(prefix, grid, length)}.json"
    return path if path.is_file() else None


# --- calibration ------------------------------------------------------------------------------------------


@dataclass
class Calibrator:
    """Accumulates block statistics of P during sampling; `plan()` turns them into a ParoPlan."""

    block: int = 64
    groups: int = 4  # equal spans of flow time, each with its own masses
    eps: float = 1e-3
    sigma: float = 0.9
    alpha: float = 0.5
    chunk: int = 256  # query rows per step: P is never held whole
    order_score: str = "paro"  # "paro": the paper's sparse / quantization score; "error": output error
    density: float = 0.3  # the masks and bits the "error" score runs
    bits: int = 8
    layout: tuple[int, tuple[int, ...], int] | None = None
    mass: dict[tuple[int, int, int], torch.Tensor] = field(default_factory=dict)  # (group, layer, order)
    sparse: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (layer, order) -> (H,)
    incoherence: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    times: dict[int, set[float]] = field(default_factory=dict)  # group -> the flow times seen in it
    error: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (layer, order) -> (H,)
    error_masks: list[torch.Tensor] | None = None  # per order (G, layers, H, n, n): the error pass is on
    orders: torch.Tensor | None = None  # (layers, heads): kept instead of chosen (`--orders-from`)
    calls: int = 0

    def __post_init__(self) -> None:
        if self.groups < 1 or not 0 <= self.alpha <= 1 or self.block <= 0:
            raise AcceleratorError(
                f"calibration needs groups >= 1, alpha in [0, 1] and block > 0 (got {self.groups}, "
                f"{self.alpha}, {self.block})"
            )
        if self.order_score not in ("paro", "error"):
            raise AcceleratorError(f"order score must be 'paro' or 'error', got {self.order_score!r}")

    def record(self, layer: int, t: float, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None,
               prefix: int, grid: tuple[int, ...], scale: float, v: torch.Tensor | None = None,
               ) -> None:  # fmt: skip
        """One attention call: q, k, v (B, H, L, D) of the layout (prefix, grid, L); v is read by the
        error pass only."""
        length = q.shape[2]
        if self.layout is None:
            self.layout = (prefix, grid, length)
        elif self.layout != (prefix, grid, length):
            raise PlanError(f"calibration saw two layouts: {self.layout} and {(prefix, grid, length)}")
        group = timestep_group(t, self.groups)
        if k.shape[1] != q.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1) if v is not None else None
        if self.error_masks is not None:
            if v is None:
                raise AcceleratorError("the error pass of PARO calibration needs v")
            self._record_error(layer, group, q, k, v, mask, grid, scale)
            return
        self.times.setdefault(group, set()).add(round(t, 4))
        bs = self.block
        n = math.ceil(length / bs)
        pad = n * bs - length
        bias = None
        if mask is not None:  # per-key masks only: they follow the keys through the permutation
            while mask.ndim < 4:
                mask = mask[None]
            if mask.shape[-2] != 1:
                raise AcceleratorError("PARO calibration takes per-key masks only, not (.., Lq, Lk) masks")
            bias = (
                torch.zeros(mask.shape, device=q.device).masked_fill(~mask, float("-inf"))
                if mask.dtype == torch.bool
                else mask.float()
            )
        for o, order in enumerate(ORDERS[len(grid)]):
            perm = sequence_permutation(prefix, grid, length, order).to(q.device)
            qp, kp = q[:, :, perm].float(), k[:, :, perm].float()
            b = bias[..., perm] if bias is not None else None
            heads = q.shape[1]
            mass = torch.zeros(heads, n, n, device=q.device, dtype=torch.float64)
            sparse_blocks = torch.zeros(heads, n, n, device=q.device, dtype=torch.float64)
            block_max = torch.zeros(heads, n, n, device=q.device, dtype=torch.float64)
            for r0 in range(0, length, self.chunk):
                s = (qp[:, :, r0 : r0 + self.chunk] @ kp.transpose(-1, -2)) * scale  # (B, H, c, L)
                if b is not None:
                    s = s + b
                p = s.softmax(-1)
                rows = torch.arange(r0, r0 + p.shape[2], device=q.device) // bs
                pb = torch.nn.functional.pad(p, (0, pad)).view(*p.shape[:3], n, bs)  # padded keys: 0
                # entries below eps per (row, key block); padded keys are not entries (padded with 1)
                small = (torch.nn.functional.pad(p, (0, pad), value=1.0).view_as(pb) < self.eps).sum(-1)
                index = rows.view(1, -1, 1).expand(heads, -1, n)  # each row into its query block
                mass.scatter_add_(1, index, pb.sum(-1).double().mean(0))
                sparse_blocks.scatter_add_(1, index, small.double().mean(0))
                block_max.scatter_reduce_(1, index, pb.amax(-1).double().amax(0), reduce="amax")
            area = torch.full((n, n), float(bs * bs), device=q.device, dtype=torch.float64)
            last = length - (n - 1) * bs  # the last blocks are partial
            area[-1, :] *= last / bs
            area[:, -1] *= last / bs
            sparse = (sparse_blocks / area >= self.sigma).double().mean((-1, -2))  # (H,)
            mean_abs = (mass / area).clamp(min=1e-30)
            incoherence = (block_max / mean_abs).mean((-1, -2))  # (H,)
            key = (group, layer, o)
            self.mass[key] = self.mass.get(key, 0) + mass.cpu()
            self.sparse[(layer, o)] = self.sparse.get((layer, o), 0) + sparse.cpu()
            self.incoherence[(layer, o)] = self.incoherence.get((layer, o), 0) + incoherence.cpu()
        self.calls += 1

    def _sources(self) -> list[int]:
        """For each timestep group, the group whose statistics it takes: itself, or for a group never
        visited (few steps) the nearest visited one."""
        seen = sorted({g for g, _, _ in self.mass})
        return [min(seen, key=lambda s: abs(s - g)) for g in range(self.groups)]

    def _order_mass(self, order: int) -> torch.Tensor:
        """(groups, layers, heads, n, n) block masses under one order."""
        layers = 1 + max(layer for layer, _ in self.sparse)
        return torch.stack(
            [torch.stack([self.mass[(s, i, order)] for i in range(layers)]) for s in self._sources()]
        ).float()

    def begin_error_pass(self) -> None:
        """After the statistics pass: the next calls (the same prompts again) measure each order's output
        error with the masks it would get (`order_score="error"`)."""
        if self.layout is None:
            raise PlanError("calibration saw no attention call; does the model use seed-core's attention()?")
        prefix, grid, length = self.layout
        self.error_masks = []
        for o in range(len(ORDERS[len(grid)])):
            mass = self._order_mass(o)
            probe = ParoPlan("", prefix, grid, length, self.block, torch.zeros(mass.shape[1:3]), mass, mass)
            self.error_masks.append(probe.block_masks(self.density))

    def _record_error(self, layer: int, group: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor | None, grid: tuple[int, ...], scale: float) -> None:  # fmt: skip
        from seed_attn import ops

        assert self.error_masks is not None and self.layout is not None
        prefix, _, length = self.layout
        if mask is not None:  # per-key masks, (B', 1, 1, L): they follow the keys through the permutation
            mask = mask.reshape(-1, 1, 1, mask.shape[-1])
        exact = ops.sparse_attention(q, k, v, scale=scale, mask=mask, allow_triton=False).float()
        for o, order in enumerate(ORDERS[len(grid)]):
            perm = sequence_permutation(prefix, grid, length, order).to(q.device)
            lists = BlockLists.from_mask(self.error_masks[o][group, layer][None].to(q.device), self.block)
            out = ops.sparse_attention(
                q[:, :, perm], k[:, :, perm], v[:, :, perm], lists, qk_bits=self.bits, pv_bits=self.bits,
                scale=scale, mask=mask[..., perm] if mask is not None else None,
            )  # fmt: skip
            ref = exact[:, :, perm]
            error = (out.float() - ref).pow(2).sum((0, 2, 3)) / ref.pow(2).sum((0, 2, 3)).clamp(min=1e-30)
            self.error[(layer, o)] = self.error.get((layer, o), 0) + error.double().cpu()

    def plan(self, model: str, density: float, bits: int, meta: dict[str, Any] | None = None) -> ParoPlan:
        if self.layout is None:
            raise PlanError("calibration saw no attention call; does the model use seed-core's attention()?")
        prefix, grid, length = self.layout
        layers = 1 + max(layer for layer, _ in self.sparse)
        n_orders = len(ORDERS[len(grid)])
        sparse = torch.stack(
            [torch.stack([self.sparse[(i, o)] for o in range(n_orders)]) for i in range(layers)]
        )
        quant = torch.stack(
            [torch.stack([self.incoherence[(i, o)] for o in range(n_orders)]) for i in range(layers)]
        )  # (layers, orders, heads)
        s_hat = sparse / sparse.sum(1, keepdim=True).clamp(min=1e-12)
        q_hat = quant / quant.sum(1, keepdim=True).clamp(min=1e-12)
        score = self.alpha * (1 - s_hat) + (1 - self.alpha) * q_hat
        errors = None
        if self.error:
            errors = torch.stack(
                [torch.stack([self.error[(i, o)] for o in range(n_orders)]) for i in range(layers)]
            )  # (layers, orders, heads)
            score = errors
        orders = score.argmin(1)  # (layers, heads)
        if self.orders is not None:
            if tuple(self.orders.shape) != tuple(orders.shape):
                raise PlanError(
                    f"the given token orders are for {tuple(self.orders.shape)} (layers, heads); this model "
                    f"has {tuple(orders.shape)}"
                )
            orders = self.orders.long()
        n = math.ceil(length / self.block)
        mass = torch.zeros(self.groups, layers, orders.shape[1], n, n)
        identity = torch.zeros_like(mass)
        for g, source in enumerate(self._sources()):
            for i in range(layers):
                for o in range(n_orders):  # each head's mass under its order
                    chosen = orders[i] == o
                    mass[g, i, chosen] = self.mass[(source, i, o)][chosen].float()
                identity[g, i] = self.mass[(source, i, 0)].float()
        info = {
            "order_score": "given" if self.orders is not None else "error" if errors is not None else "paro",
            # mean relative output error per call, (layers, orders, heads)
            **({"order_error": (errors * layers / self.calls).tolist()} if errors is not None else {}),
            **({"error_density": self.density, "error_bits": self.bits} if errors is not None else {}),
            "alpha": self.alpha,
            "eps": self.eps,
            "sigma": self.sigma,
            "calls": self.calls,
            "sparse_metric": sparse.tolist(),
            "incoherence": quant.tolist(),
            "times": [sorted(self.times.get(g, ()), reverse=True) for g in range(self.groups)],
            **(meta or {}),
        }
        return ParoPlan(model, prefix, grid, length, self.block, orders, mass, identity, density, bits, info)


# --- run time ---------------------------------------------------------------------------------------------


@dataclass
class PreparedPlan:
    """A plan turned into what the kernels take, for one density and bit width."""

    plan: ParoPlan
    perms: torch.Tensor  # (layers, heads, L) long
    inverse: torch.Tensor  # (layers, heads, L) long
    lists: list[list[BlockLists]]  # [group][layer], each (1, H, nQb, W)
    tables: torch.Tensor  # (groups, layers, 1, H, nQb, nKb) bool (for FlexAttention)
    density: float  # achieved over the sampled steps, forced blocks included
    step_times: tuple[float, ...] | None = None  # a schedule's: lists / tables are per step, not per group
    flex_masks: dict[tuple[int, int], Any] = field(default_factory=dict)

    def slot_of(self, t: float) -> int:
        """Where the masks of flow time t sit in `lists` / `tables`: its timestep group, or with a schedule
        the calibrated step nearest to t."""
        if self.step_times is None:
            return self.plan.group_of(t)
        times = self.step_times
        slot = min(range(len(times)), key=lambda i: abs(times[i] - t))
        if abs(times[slot] - t) > 0.01:  # another sampler (a student's steps): its masks are a guess
            from seed_attn.ops import warn_once

            warn_once(
                f"paro: a step at t = {t:.3g} is not one this schedule was calibrated on (t "
                f"{' / '.join(f'{x:g}' for x in times)}); it runs the nearest one's masks. Calibrate a plan "
                "for this sampler (`seed calibrate --with ... --out DIR`, then paro:plan=DIR)"
            )
        return slot

    def flex_mask(self, group: int, layer: int) -> Any:
        """The FlexAttention BlockMask of (group, layer), built on first use and kept."""
        if (group, layer) not in self.flex_masks:
            from seed_attn.ops import flex_block_mask

            n = self.plan.length
            self.flex_masks[(group, layer)] = flex_block_mask(
                self.tables[group, layer], self.plan.block, n, n
            )
        return self.flex_masks[(group, layer)]


@dataclass
class ParoRuntime:
    """What `--accel paro` installs: the plans found for the model, and how to run them."""

    directory: Path
    model: str
    density: float | None = None  # None: each plan's calibrated density
    bits: int | None = None
    pv_bits: int | None = None
    reorder: bool = True
    kernel: str = "auto"  # auto | torch | flex
    schedule: tuple[float, ...] | None = None  # one density per calibrated step (wins over density)
    prepared: dict[tuple[int, tuple[int, ...], int, str], PreparedPlan] = field(default_factory=dict)

    def prepare(self, prefix: int, grid: tuple[int, ...], length: int, device: torch.device) -> PreparedPlan:
        key = (prefix, grid, length, str(device))
        if key in self.prepared:
            return self.prepared[key]
        path = find_plan(self.directory, prefix, grid, length)
        if path is None:
            size = "x".join(str(g) for g in grid[::-1])
            raise PlanError(
                f"no PARO plan for this layout (latent grid {size}, {prefix} text tokens) in "
                f"{self.directory}; run `seed calibrate -m {self.model} --accel paro --size WxH` for the "
                "image size you generate"
            )
        plan = ParoPlan.load(path)
        density = self.density if self.density is not None else plan.density
        if self.schedule:  # (steps, layers, H, n, n)
            masks, used = plan.step_masks(self.schedule, self.reorder), None
        else:  # (G, layers, H, n, n)
            masks, used = plan.block_masks(density, self.reorder), plan.visited_groups()
        orders = ORDERS[len(grid)]
        perms = torch.stack(
            [
                torch.stack(
                    [
                        sequence_permutation(
                            prefix, grid, length, orders[int(o)] if self.reorder else orders[0]
                        )
                        for o in plan.orders[layer]
                    ]
                )
                for layer in range(plan.layers)
            ]
        ).to(device)
        inverse = torch.argsort(perms, dim=-1)
        lists = [
            [
                BlockLists.from_mask(masks[g, layer][None].to(device), plan.block)
                for layer in range(plan.layers)
            ]
            for g in range(masks.shape[0])
        ]
        achieved = float(
            (masks if used is None else masks[used]).float().mean()
        )  # what the sampled steps keep
        prepared = PreparedPlan(
            plan, perms, inverse, lists, masks[:, :, None].to(device), achieved,
            step_times=tuple(plan.steps()) if self.schedule else None,
        )  # fmt: skip
        self.prepared[key] = prepared
        return prepared


_ACTIVE: contextvars.ContextVar[tuple[ParoRuntime | Calibrator, int] | None] = contextvars.ContextVar(
    "seed_attn_paro_layer", default=None
)


def active_layer() -> tuple[ParoRuntime | Calibrator, int] | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def layer_scope(owner: ParoRuntime | Calibrator, layer: int) -> Iterator[None]:
    token = _ACTIVE.set((owner, layer))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def attention_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules that call the dispatch (they hold `attention_backend`), in model order."""
    return [m for m in module.modules() if hasattr(m, "attention_backend")]


@dataclass
class Installed:
    """Handle of `install`: `remove()` restores the layers' own forward and backend."""

    module: torch.nn.Module
    layers: list[torch.nn.Module]

    def remove(self) -> None:
        from seed_core.attention import set_attention_backend

        for layer in self.layers:
            layer.__dict__.pop("forward", None)
        set_attention_backend(self.module, None)


def install(module: torch.nn.Module, owner: ParoRuntime | Calibrator, backend: str) -> Installed:
    """Route every attention layer of `module` to `backend`, with its layer index visible to it while its
    forward runs (a context variable: per thread, and reset even when the forward raises)."""
    from seed_core.attention import set_attention_backend

    set_attention_backend(module, backend)
    layers = attention_layers(module)
    for i, layer in enumerate(layers):
        original = layer.forward

        def forward(*args: Any, _i: int = i, _original: Any = original, **kwargs: Any) -> Any:
            with layer_scope(owner, _i):
                return _original(*args, **kwargs)

        layer.forward = forward  # type: ignore[method-assign]  # an instance attribute, removed by remove()
    return Installed(module, layers)
