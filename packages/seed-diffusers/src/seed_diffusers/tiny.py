"""Tiny randomly initialised diffusers pipelines (SD3, Flux, Wan 2.1), built offline.

Tests and benchmarks need real diffusers pipeline directories without a model hub: every component is
built from a config (diffusers' own dummy sizes), and the CLIP and T5 tokenizers are written from a small
vocabulary made here. `build_tiny(family, directory)` saves one with `save_pretrained`, so it loads like a
downloaded pipeline (`DiffusionPipeline.from_pretrained(directory, local_files_only=True)`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("sd3", "flux", "wan")
WORDS = (
    "a red green blue yellow purple orange black white circle square triangle star cat dog "
    "on the of and with left right above below big small two three shape image photo"
).split()


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 base symbols of a byte-level BPE vocabulary."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def clip_tokenizer(directory: Path) -> Any:
    """A CLIP tokenizer over the base bytes plus WORDS (whole words merged), 77 tokens long."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    base = _byte_chars()
    vocab = base + [c + "</w>" for c in base]
    merges: list[str] = []
    for word in WORDS:  # merge each word letter by letter, the last merge carrying </w>
        piece = word[0]
        for i, ch in enumerate(word[1:], 1):
            right = ch + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{piece} {right}")
            piece += right
            if piece not in vocab:
                vocab.append(piece)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {**special, "pad_token": "<|endoftext|>", "model_max_length": 77}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(directory))


def t5_tokenizer(directory: Path) -> tuple[Any, int]:
    """A T5-style Unigram tokenizer (WORDS as pieces, letters as fallback), written as tokenizer.json;
    returns it and its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    letters = sorted(set("".join(WORDS)) | set("0123456789,."))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -5.0) for w in WORDS] + [(c, -10.0) for c in letters]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok.save(str(directory / "tokenizer.json"))
    config = {
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "extra_ids": 0,
        "model_max_length": 512,
        "tokenizer_class": "T5Tokenizer",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return T5TokenizerFast.from_pretrained(str(directory)), len(pieces)


def _clip(projection: bool, vocab: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=32,
        vocab_size=vocab,
        max_position_embeddings=77,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5(vocab: int, umt5: bool = False) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(
        vocab_size=vocab, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    return (UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw))).eval()


def _image_vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )  # fmt: skip


def components(family: str, work: Path, *, layers: int = 1) -> dict[str, Any]:
    """The components of a tiny `family` pipeline (tokenizer files are written under `work`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    clip_tok = clip_tokenizer(work / "clip")
    t5_tok, t5_vocab = t5_tokenizer(work / "t5")
    clip_vocab = len(clip_tok)
    if family == "sd3":
        from diffusers import SD3Transformer2DModel

        transformer = SD3Transformer2DModel(
            sample_size=32, patch_size=1, in_channels=4, num_layers=layers, attention_head_dim=8,
            num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
            pooled_projection_dim=64, out_channels=4,
        )  # fmt: skip
        return dict(
            transformer=transformer, vae=_image_vae(4), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            text_encoder=_clip(True, clip_vocab), tokenizer=clip_tok,
            text_encoder_2=_clip(True, clip_vocab), tokenizer_2=clip_tok,
            text_encoder_3=_t5(t5_vocab), tokenizer_3=t5_tok,
        )  # fmt: skip
    if family == "flux":
        from diffusers import FluxTransformer2DModel

        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=4, num_layers=layers, num_single_layers=layers, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
            guidance_embeds=True,  # like Flux-dev: guidance is an input of the transformer
        )  # fmt: skip
        return dict(
            transformer=transformer, vae=_image_vae(1), scheduler=FlowMatchEulerDiscreteScheduler(),
            text_encoder=_clip(False, clip_vocab), tokenizer=clip_tok,
            text_encoder_2=_t5(t5_vocab), tokenizer_2=t5_tok, image_encoder=None, feature_extractor=None,
        )  # fmt: skip
    if family == "wan":
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
            out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=max(2, layers),
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        )  # fmt: skip
        vae = AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )  # fmt: skip
        # the scheduler the Wan 2.1 Diffusers folders ship: UniPC on flow sigmas
        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        )
        return dict(
            transformer=transformer, vae=vae, scheduler=scheduler,
            text_encoder=_t5(t5_vocab, umt5=True), tokenizer=t5_tok, transformer_2=None,
        )  # fmt: skip
    raise ValueError(f"unknown tiny family {family!r}; use one of {', '.join(FAMILIES)}")


PIPELINES = {"sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline", "wan": "WanPipeline"}


def build_tiny(family: str, directory: Path, *, seed: int = 0, layers: int = 1) -> Path:
    """Save a tiny random `family` pipeline ("sd3", "flux" or "wan") to `directory`; returns it."""
    import tempfile

    import diffusers

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as work:
        parts = components(family, Path(work), layers=layers)
        pipe = getattr(diffusers, PIPELINES[family])(**parts)
        pipe.save_pretrained(str(directory), safe_serialization=True)
    return directory
