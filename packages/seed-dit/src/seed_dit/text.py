"""The text-encoder slot: a protocol, a small trainable encoder for the mini models, and any local
transformers encoder (T5, CLIP, or another AutoModel) for real checkpoints.

Seedream's own encoder (a Seed1.5-VL-derived LLM) is closed; any local model fills the slot.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from seed_core.attention import attention
from seed_core.errors import CheckpointNotFoundError, UsageError


@dataclass
class TextEmbeddings:
    tokens: torch.Tensor  # (B, L, dim)
    mask: torch.Tensor  # (B, L) bool, True = real token
    pooled: torch.Tensor  # (B, pooled_dim)


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that turns prompts into token features, a padding mask and a pooled vector."""

    dim: int
    pooled_dim: int

    def encode(self, prompts: Sequence[str], device: torch.device | str = "cpu") -> TextEmbeddings: ...


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D), (B, L) -> (B, D); zeros for an all-padding row (the empty prompt)."""
    weights = mask.to(tokens.dtype)[..., None]
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class HashWordTokenizer:
    """Lower-cased words hashed into `vocab` buckets (id 0 is padding): no vocabulary file to ship, stable
    across machines (crc32), and exact for the small closed vocabulary of the shapes world."""

    def __init__(self, vocab: int = 4096, max_length: int = 32) -> None:
        self.vocab, self.max_length = vocab, max_length

    def word_id(self, word: str) -> int:
        return 1 + zlib.crc32(word.encode()) % (self.vocab - 1)

    def ids(self, prompt: str) -> list[int]:
        """The ids of the prompt's words, at most `max_length` of them."""
        words = prompt.lower().replace(",", " , ").replace(".", " ").split()[: self.max_length]
        return [self.word_id(w) for w in words]

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ids (B, max_length) long, mask (B, max_length) bool."""
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            row = self.ids(prompt)
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, ids != 0


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.attention_backend: str | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # let padding attend to itself so an all-padding row (the empty prompt) stays defined
        keys = mask[:, None, None, :] | torch.eye(n, dtype=torch.bool, device=x.device)[None, None]
        out = attention(q, k, v, mask=keys, backend=self.attention_backend)
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class MiniTextEncoder(nn.Module):
    """A small trainable transformer encoder over hashed words, trained jointly with a mini DiT."""

    def __init__(
        self, dim: int = 256, layers: int = 2, heads: int = 4, vocab: int = 4096, max_length: int = 32
    ) -> None:
        super().__init__()
        self.dim = self.pooled_dim = dim
        self.config = {"dim": dim, "layers": layers, "heads": heads, "vocab": vocab, "max_length": max_length}
        self.tokenizer = HashWordTokenizer(vocab, max_length)
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_length, dim))
        self.layers = nn.ModuleList(_EncoderLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def encode(self, prompts: Sequence[str], device: torch.device | str = "cpu") -> TextEmbeddings:
        ids, mask = self.tokenizer(prompts)
        return self.encode_ids(ids.to(device), mask.to(device))

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> TextEmbeddings:
        """`encode` of prompts already tokenized: ids (B, max_length) long and mask (B, max_length) bool,
        on the model's device (a training loop tokenizes in the processes that draw its data)."""
        x = self.embed(ids) + self.pos[None]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x) * mask[..., None]
        return TextEmbeddings(x, mask, masked_mean(x, mask))


class HFTextEncoder(nn.Module):
    """A transformers encoder loaded from a local directory (never downloaded).

    Encoder-decoder models (T5) use their encoder; CLIP text models their text tower; anything else
    `AutoModel`. The pooled vector is the model's `pooler_output` when it has one, else the masked mean.
    """

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 128) -> None:
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        config = model.config
        self.dim = self.pooled_dim = int(getattr(config, "hidden_size", None) or config.d_model)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, dtype: torch.dtype = torch.float32, max_length: int = 128
    ) -> HFTextEncoder:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointNotFoundError(f"{path}: no config.json; expected a transformers model directory")
        try:
            import transformers
        except ImportError:
            raise UsageError("loading a transformers text encoder needs `pip install transformers`") from None
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        kwargs = {"local_files_only": True, "dtype": dtype}
        encoder_only = {
            "t5": "T5EncoderModel",
            "mt5": "MT5EncoderModel",
            "umt5": "UMT5EncoderModel",
            "clip": "CLIPTextModel",
            "clip_text_model": "CLIPTextModel",
        }
        if config.model_type in encoder_only:  # load the text tower only, not a decoder or image tower
            model = getattr(transformers, encoder_only[config.model_type]).from_pretrained(path, **kwargs)
        else:
            model = transformers.AutoModel.from_pretrained(path, **kwargs)
            if getattr(config, "is_encoder_decoder", False):
                model = model.get_encoder()
        return cls(model.eval(), tokenizer, max_length)

    def encode(self, prompts: Sequence[str], device: torch.device | str = "cpu") -> TextEmbeddings:
        batch = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device).bool()
        out = self.model(input_ids=ids, attention_mask=mask.long())
        tokens = out.last_hidden_state * mask[..., None]
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = masked_mean(tokens, mask)
        return TextEmbeddings(tokens, mask, pooled)
