"""Tiny random models and a clean steering state around a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steering import Steerer, capture_vector, steerer_for
from steering.models import LoadedModel
from steering.vector import SteeringVector


def tiny_llama(tokenizer: Any, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama (4 layers, hidden size 32) with the
    tokenizer's vocabulary: seconds to build, nothing to download."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


@contextmanager
def clean_steerer(loaded: LoadedModel) -> Iterator[Steerer]:
    """The model's Steerer with no vectors, reset again however the test ends."""
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    try:
        yield steerer
    finally:
        steerer.reset()


def fresh_steerer(loaded: LoadedModel) -> Steerer:
    """The model's Steerer with no vectors (the test resets it if it adds any)."""
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    return steerer


def joy_vector(steerer: Steerer, layer: int, alpha: float) -> SteeringVector:
    """A small joy-minus-grief vector at `layer`."""
    joy, grief = ["I love this day", "so happy"], ["I hate it", "so sad"]
    return capture_vector(steerer, joy, layer, alpha, grief)
