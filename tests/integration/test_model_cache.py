"""The embedded model kept as a dequantized Transformers folder: a load that
reads it gives what a load from the GGUF gives, and a cache that cannot be
written costs nothing but the time."""

from __future__ import annotations

import pytest
import torch

from steering.generate import chat_input_ids
from steering.models import CACHE_COMPLETE, EMBEDDED_NAME, embedded_cache_folder, load_model

pytestmark = pytest.mark.full  # two loads of the real model from its GGUF

MESSAGES = [{"role": "user", "content": "Hello there, how are you?"}]
TEXT = "The quick brown fox, 12 lazy dogs and <|im_start|> a special token.\n"


def test_the_kept_folder_loads_the_same_model_and_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = embedded_cache_folder()
    assert folder.is_relative_to(tmp_path) and not folder.exists()
    converted = load_model()  # from the GGUF, keeping the folder
    assert (folder / CACHE_COMPLETE).is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".converting-")]
    cached = load_model()
    assert cached.name == converted.name == EMBEDDED_NAME
    assert cached.origin == converted.origin == (None, None)  # a Ray worker loads it alike
    assert "gguf" not in str(getattr(cached.model.config, "quantization_config", None) or "")
    mine, theirs = converted.model.state_dict(), cached.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert {v.dtype for v in theirs.values()} == {torch.float32}
    one, two = converted.tokenizer, cached.tokenizer
    assert one(TEXT).input_ids == two(TEXT).input_ids
    assert one.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False) == (
        two.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    )
    assert (one.eos_token_id, one.pad_token_id) == (two.eos_token_id, two.pad_token_id)
    assert converted.model.generation_config.to_dict() == cached.model.generation_config.to_dict()
    ids = chat_input_ids(one, MESSAGES)
    greedy = {"max_new_tokens": 12, "do_sample": False}
    replies = [loaded.model.generate(ids, **greedy) for loaded in (converted, cached)]
    assert torch.equal(*replies)

    (folder / "model.safetensors").write_bytes(b"damaged")  # a damaged folder is made again
    again = load_model()
    assert all(torch.equal(mine[k], again.model.state_dict()[k]) for k in mine)
    assert (folder / CACHE_COMPLETE).is_file() and load_model().name == EMBEDDED_NAME


def test_a_cache_that_cannot_be_written_still_loads(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    loaded = load_model()
    assert loaded.name == EMBEDDED_NAME and not embedded_cache_folder().exists()
