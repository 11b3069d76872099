"""Peak memory of a computation without running it: shapes only, on fake tensors.

`PeakTracker` is a dispatch mode that adds up the bytes of every tensor an operator creates on one device
type and subtracts them when the last tensor viewing that storage dies, keeping the maximum. Under
`fake_device()` (PyTorch's `FakeTensorMode`) operators compute shapes and nothing else, so the peak of a
3B-parameter model on a 720p clip on a "cuda" device is counted in seconds on a CPU with no GPU.

What it counts is what the tensors hold, as `torch.cuda.max_memory_allocated` does, less what the
kernels borrow for themselves (cuDNN and cuBLAS workspaces) and the caching allocator's rounding: an
estimate from below. A GPU grows its convolution workspaces into memory it has spare, so a large card
reports more than a small one needs.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MIB = 2**20


class PeakTracker(TorchDispatchMode):
    """Counts live bytes of tensors on `device_type` created inside the mode (plus those passed to
    `hold`); `peak` is the most held at once since the last `reset`."""

    def __init__(self, device_type: str = "cuda") -> None:
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, list[int]] = {}  # storage -> [tensors alive that use it, bytes]
        self.now = 0
        self.peak = 0

    def hold(self, tensor: torch.Tensor) -> None:
        """Count `tensor` (made outside the mode, e.g. an input) until it dies."""
        if tensor.device.type != self.device_type:
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [0, storage.nbytes()]
            self.now += entry[1]
            self.peak = max(self.peak, self.now)
        entry[0] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.now -= entry[1]
            del self.live[key]

    def reset(self) -> None:
        """Start a new peak from what is held now."""
        self.peak = self.now

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor):
                continue
            key = leaf.untyped_storage()._cdata
            if key in inputs and key not in self.live:
                continue  # a view of a tensor made outside (a weight): it was there before
            self.hold(leaf)
        return out


class _FusedAttention(TorchFunctionMode):
    """`scaled_dot_product_attention` as a fused kernel allocates it on a GPU: the output and one float
    per query row (the log-sum-exp), never the (N, N) score matrix; fake tensors would otherwise take
    the composite path, which does."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.nn.functional.scaled_dot_product_attention:
            q, v = args[0], args[2] if len(args) > 2 else kwargs["value"]
            out = q.new_empty(*q.shape[:-1], v.shape[-1])
            out.new_empty(q.shape[:-1], dtype=torch.float32)  # the log-sum-exp, dropped at once
            return out
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def track(device_type: str = "cuda", fused_attention: bool = True) -> Iterator[PeakTracker]:
    """Count the peak memory of what runs in the block (see `PeakTracker`); `fused_attention`: count
    attention as a fused GPU kernel would allocate it (see `_FusedAttention`)."""
    tracker = PeakTracker(device_type)
    with contextlib.ExitStack() as stack:
        if fused_attention:
            stack.enter_context(_FusedAttention())
        stack.enter_context(tracker)
        yield tracker


@contextlib.contextmanager
def fake_device(dtype: torch.dtype | None = None, device: str = "cuda") -> Iterator[torch.device]:
    """Within the block, tensors are fake (shapes, no data): build models under it with `with
    torch.device(dev)` (modules cannot be moved between devices once fake). `dtype`: the default dtype
    while the block runs, so that parameters are created in it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    previous = torch.get_default_dtype()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            if dtype is not None:
                torch.set_default_dtype(dtype)
            yield torch.device(device)
    finally:
        torch.set_default_dtype(previous)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
