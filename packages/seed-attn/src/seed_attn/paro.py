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

At run time, the masks of a density D keep, per (timestep group, layer, head), the blocks with the most
mass per query row until D of all blocks are kept, after the forced ones: every block that holds text
tokens (rows and columns) and the diagonal. The plan stores the masses, so any density is built from one
calibration.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
from collections.abc import Iterator
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

    def group_of(self, t: float) -> int:
        """Timestep group of flow time t (1 = noise): equal bins from noise to clean."""
        return min(max(int((1.0 - t) * self.groups), 0), self.groups - 1)


def find_plan(directory: Path, prefix: int, grid: tuple[int, ...], length: int) -> Path | None:
    path = directory / f"{ParoPlan.file_stem(prefix, grid, length)}.json"
    return path if path.is_file() else None


# --- calibration ------------------------------------------------------------------------------------------


@dataclass
class Calibrator:
    """Accumulates block statistics of P during sampling; `plan()` turns them into a ParoPlan."""

    block: int = 64
    groups: int = 4
    eps: float = 1e-3
    sigma: float = 0.9
    alpha: float = 0.5
    chunk: int = 256  # query rows per step: P is never held whole
    layout: tuple[int, tuple[int, ...], int] | None = None
    mass: dict[tuple[int, int, int], torch.Tensor] = field(default_factory=dict)  # (group, layer, order)
    sparse: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (layer, order) -> (H,)
    incoherence: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    calls: int = 0

    def __post_init__(self) -> None:
        if self.groups < 1 or not 0 <= self.alpha <= 1 or self.block <= 0:
            raise AcceleratorError(
                f"calibration needs groups >= 1, alpha in [0, 1] and block > 0 (got {self.groups}, "
                f"{self.alpha}, {self.block})"
            )

    def record(self, layer: int, t: float, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None,
               prefix: int, grid: tuple[int, ...], scale: float) -> None:  # fmt: skip
        """One attention call: q, k (B, H, L, D) of the layout (prefix, grid, L)."""
        length = q.shape[2]
        if self.layout is None:
            self.layout = (prefix, grid, length)
        elif self.layout != (prefix, grid, length):
            raise PlanError(f"calibration saw two layouts: {self.layout} and {(prefix, grid, length)}")
        group = min(max(int((1.0 - t) * self.groups), 0), self.groups - 1)
        bs = self.block
        n = math.ceil(length / bs)
        pad = n * bs - length
        if k.shape[1] != q.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
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
        orders = score.argmin(1)  # (layers, heads)
        n = math.ceil(length / self.block)
        heads = orders.shape[1]
        mass = torch.zeros(self.groups, layers, heads, n, n)
        identity = torch.zeros_like(mass)
        for g in range(self.groups):
            for i in range(layers):
                if (g, i, 0) not in self.mass:
                    continue  # a group never visited (few steps): filled below
                stacked = torch.stack([self.mass[(g, i, o)] for o in range(n_orders)])  # (orders, H, n, n)
                mass[g, i] = stacked[orders[i], torch.arange(heads)].float()
                identity[g, i] = stacked[0].float()
        seen = [g for g in range(self.groups) if (g, 0, 0) in self.mass]
        for g in range(self.groups):
            if g not in seen:
                nearest = min(seen, key=lambda s: abs(s - g))
                mass[g], identity[g] = mass[nearest], identity[nearest]
        info = {
            "alpha": self.alpha,
            "eps": self.eps,
            "sigma": self.sigma,
            "calls": self.calls,
            "sparse_metric": sparse.tolist(),
            "incoherence": quant.tolist(),
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
    density: float  # achieved, forced blocks included
    flex_masks: dict[tuple[int, int], Any] = field(default_factory=dict)

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
        masks = plan.block_masks(density, self.reorder)  # (G, layers, H, n, n)
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
            for g in range(plan.groups)
        ]
        prepared = PreparedPlan(
            plan, perms, inverse, lists, masks[:, :, None].to(device), float(masks.float().mean())
        )
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
