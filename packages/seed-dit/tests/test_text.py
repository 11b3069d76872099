from __future__ import annotations

import pytest
import torch

from seed_core.errors import CheckpointNotFoundError
from seed_dit.text import HashWordTokenizer, HFTextEncoder, MiniTextEncoder, TextEncoder

WORDS = ["[PAD]", "[UNK]", "a", "red", "circle", "left", "of", "blue", "square"]


def _save_tiny_transformers_encoder(path, kind: str) -> None:
    """A randomly initialised transformers encoder and a word-level tokenizer, saved like a hub download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(path)
    torch.manual_seed(0)
    if kind == "t5":
        model = T5EncoderModel(
            T5Config(
                vocab_size=len(WORDS),
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=1,
                num_heads=4,
                pad_token_id=0,
                decoder_start_token_id=0,
            )
        )
    else:
        model = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(WORDS),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=4,
                max_position_embeddings=16,
                pad_token_id=0,
            )
        )
    model.save_pretrained(path)


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_transformers_encoder_from_a_local_directory(tmp_path, kind):
    _save_tiny_transformers_encoder(tmp_path, kind)
    encoder = HFTextEncoder.from_pretrained(tmp_path, max_length=8)
    assert isinstance(encoder, TextEncoder) and encoder.dim == 32
    with torch.no_grad():
        out = encoder.encode(["a red circle", "a blue square left of a red circle"])
    assert out.tokens.shape == (2, 8, 32) and out.pooled.shape == (2, 32)
    assert out.mask.tolist()[0] == [True] * 3 + [False] * 5
    assert out.tokens[0, 3:].abs().sum() == 0  # padding is zeroed
    with torch.no_grad():
        again = encoder.encode(["a red circle"])
    torch.testing.assert_close(again.tokens[0], out.tokens[0])


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no config.json"):
        HFTextEncoder.from_pretrained(tmp_path)


def test_mini_encoder():
    torch.manual_seed(0)
    encoder = MiniTextEncoder(dim=32, layers=1, heads=2, max_length=8)
    assert isinstance(encoder, TextEncoder)
    out = encoder.encode(["A red circle", "a red circle", ""])
    assert out.tokens.shape == (3, 8, 32) and out.mask.sum(1).tolist() == [3, 3, 0]
    torch.testing.assert_close(out.tokens[0], out.tokens[1])  # case-insensitive words
    assert torch.isfinite(out.tokens).all() and out.pooled[2].abs().sum() == 0  # the empty prompt is defined
    out.pooled.sum().backward()
    assert encoder.embed.weight.grad is not None


def test_hash_tokenizer_is_stable():
    tok = HashWordTokenizer(vocab=4096, max_length=4)
    ids, mask = tok(["red circle, blue square and more words"])
    assert ids.shape == (1, 4) and mask.all()
    assert tok.word_id("red") == 1 + 4200685455 % 4095  # crc32: the same on every machine
