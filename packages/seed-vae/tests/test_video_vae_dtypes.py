"""The causal video VAE in bfloat16 / float16 on the CPU: every op has a kernel there (the shortcut's
average pooling runs in float32), and the result stays close to float32."""

from __future__ import annotations

import pytest
import torch

from seed_vae.video import CausalVideoVAE, VideoVAEConfig


@pytest.mark.parametrize("preset", ["mini", "tiny"])  # with and without the pooling shortcuts
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_on_the_cpu_close_to_float32(preset: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(VideoVAEConfig.preset(preset)).eval()
    f = vae.cfg.temporal_factor
    x = torch.rand(1, 3, f + 1, 16, 16) * 2 - 1
    with torch.no_grad():
        z, y = vae.encode(x), vae.decode(vae.encode(x))
        half = vae.to(dtype)
        z_half, y_half = half.encode(x.to(dtype)), half.decode(z.to(dtype), chunk=1)
    assert z_half.dtype == y_half.dtype == dtype and z_half.shape == z.shape and y_half.shape == y.shape
    # relative max error measured: bf16 up to 0.029, fp16 up to 0.003 (8 and 11 significant bits)
    tolerance = 0.08 if dtype == torch.bfloat16 else 0.01
    assert float((z_half.float() - z).abs().max()) < tolerance * float(z.abs().max())
    assert float((y_half.float() - y).abs().max()) < tolerance * float(y.abs().max())
