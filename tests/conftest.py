"""Shared fixtures: a tiny random Llama (and GPT-2) for fast tests, and the
embedded SmolLM2 for tests of real behaviour. Everything runs offline."""

from __future__ import annotations

import os
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from steering.models import EMBEDDED_GGUF, EMBEDDED_NAME, LoadedModel, embedded_model_folder, load_model


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (small, offline); tiny models share it."""
    return AutoTokenizer.from_pretrained(str(embedded_model_folder()), gguf_file=EMBEDDED_GGUF)


def _tiny_llama(tokenizer, seed: int) -> LlamaForCausalLM:
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


@pytest.fixture
def tiny(tokenizer) -> LoadedModel:
    """A tiny randomly initialised Llama: 4 layers, hidden size 32."""
    return LoadedModel(model=_tiny_llama(tokenizer, 0), tokenizer=tokenizer, name="tiny-llama")


@pytest.fixture
def tiny_factory(tokenizer):
    """Builds further tiny Llamas (other seeds) for tests that need two models."""
    return lambda seed=1: LoadedModel(_tiny_llama(tokenizer, seed), tokenizer, f"tiny-llama-{seed}")


@pytest.fixture
def tiny_gpt2(tokenizer) -> LoadedModel:
    """A tiny randomly initialised GPT-2 (layers at transformer.h)."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=3, n_head=4, n_positions=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return LoadedModel(model=GPT2LMHeadModel(config).eval(), tokenizer=tokenizer, name="tiny-gpt2")


@contextmanager
def clean_steerer(loaded: LoadedModel):
    """The model's Steerer with no vectors, reset again however the test ends."""
    from steering import steerer_for

    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    try:
        yield steerer
    finally:
        steerer.reset()


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct, loaded once per test session."""
    loaded = load_model()
    assert loaded.name == EMBEDDED_NAME
    return loaded


@pytest.fixture
def smol(smollm2):
    """SmolLM2 with a clean steering state before and after the test."""
    with clean_steerer(smollm2):
        yield smollm2


@pytest.fixture
def tiny_session(tiny):
    """A ModelSession on the tiny Llama, with a clean steering state before and after."""
    from steering.session import ModelSession

    with clean_steerer(tiny):
        yield ModelSession(lambda: tiny)


@pytest.fixture
def tiny_steerer(tiny):
    """The tiny Llama's Steerer, with no vectors before and after the test."""
    with clean_steerer(tiny) as steerer:
        yield steerer


@pytest.fixture
def tiny_dir(tiny, tmp_path):
    """The tiny Llama saved as a model folder, for command-line tests."""
    folder = tmp_path / "tiny-model"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api_server():
    """Starts the OpenAI-compatible API (ui/api) on a ModelSession, on a free
    loopback port, as `python extension.py --api` does; everything started is
    stopped after the test. Call it as start(session, api_key=None, **queue options);
    it returns (server, queue)."""
    from steering.serving import GenerationQueue, VectorCatalog
    from ui.api import ApiServer, build_api

    started = []

    def start(session, api_key=None, **queue_options):
        queue = GenerationQueue(session, VectorCatalog(session.data), **queue_options)
        server = ApiServer(build_api(session, queue, api_key), "127.0.0.1", free_port())
        started.append((server, queue))
        server.start()
        return server, queue

    yield start
    for server, queue in started:
        server.stop()
        queue.close()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (right now)."""
    return free_port()
