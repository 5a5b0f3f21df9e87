"""The test tiers, and the fixtures every tier shares: a tiny random Llama (and
GPT-2) for fast tests, and the embedded SmolLM2 for tests of real behaviour.
Everything runs offline.

Tiers (docs/testing.md): `pytest` runs the fast tier, `pytest --full` (what
scripts/check.sh and CI run) every test. Where a test lives says what it costs,
and its marker comes from there: tests/unit/ (`unit`: tiny models, pure logic),
tests/integration/ (`integration`: lm-eval, SmolLM2, the command lines) and
tests/e2e/ (`e2e`: Chromium, the real webui, the side environments). The fast
tier leaves out e2e/ and the tests marked `full`; naming test files or folders
on the command line runs them whatever their tier. A test that needs something
the install may lack (Chromium, a side environment, the real webui) asks for it
with the `require` fixture: missing, it is skipped with the reason in the fast
tier and fails with it in the full tier.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from steering.models import (
    EMBEDDED_GGUF,
    EMBEDDED_NAME,
    LoadedModel,
    embedded_model_folder,
    load_model,
)
from tests.support.models import clean_steerer, tiny_llama

TESTS = Path(__file__).resolve().parent
# tests/webui: the stand-in webui, its scenarios and the real webui's driver,
# imported by name (`import scenarios`) by the tests of the extension
sys.path.insert(0, str(TESTS / "webui"))
TIERS = ("unit", "integration", "e2e")  # folders under tests/, each its own marker
FULL_OPTION = "--full"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        FULL_OPTION,
        action="store_true",
        help="the full tier: every test, and a missing requirement (Chromium, a side "
        "environment) fails instead of skipping (docs/testing.md)",
    )


def full_tier(config: pytest.Config) -> bool:
    return bool(config.getoption(FULL_OPTION))


def _tier(path: Path) -> str | None:
    """The tier a test file's folder names, or None for a file outside them."""
    try:
        folder = path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return folder if folder in TIERS else None


def _named_explicitly(config: pytest.Config) -> bool:
    """Whether the command line named tests (files, folders, node ids) below
    tests/ itself: named tests run whatever their tier."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    return any(Path(arg.split("::")[0]).resolve() != TESTS for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item.path)
        if tier is not None:
            item.add_marker(tier)
        if "smollm2" in getattr(item, "fixturenames", ()):
            item.add_marker("smol")
    if full_tier(config) or _named_explicitly(config):
        return
    fast = [i for i in items if not (i.get_closest_marker("e2e") or i.get_closest_marker("full"))]
    left_out = [i for i in items if i.get_closest_marker("e2e") or i.get_closest_marker("full")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = fast


@pytest.fixture(scope="session")
def require(request: pytest.FixtureRequest) -> Callable[[bool, str], None]:
    """`require(present, reason)`: go on when `present`; otherwise skip with
    `reason` in the fast tier and fail with it in the full tier, which needs
    everything scripts/install.sh --test installs."""
    full = full_tier(request.config)

    def check(present: bool, reason: str) -> None:
        if present:
            return
        if full:
            pytest.fail(f"{reason} (the full tier needs it)", pytrace=False)
        pytest.skip(reason)

    return check


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (small, offline); tiny models share it."""
    return AutoTokenizer.from_pretrained(str(embedded_model_folder()), gguf_file=EMBEDDED_GGUF)


@pytest.fixture
def tiny(tokenizer) -> LoadedModel:
    """A tiny randomly initialised Llama: 4 layers, hidden size 32."""
    return LoadedModel(model=tiny_llama(tokenizer, 0), tokenizer=tokenizer, name="tiny-llama")


@pytest.fixture
def tiny_factory(tokenizer):
    """Builds further tiny Llamas (other seeds) for tests that need two models."""
    return lambda seed=1: LoadedModel(tiny_llama(tokenizer, seed), tokenizer, f"tiny-llama-{seed}")


@pytest.fixture
def tiny_gpt2(tokenizer) -> LoadedModel:
    """A tiny randomly initialised GPT-2 (layers at transformer.h)."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=3, n_head=4, n_positions=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return LoadedModel(model=GPT2LMHeadModel(config).eval(), tokenizer=tokenizer, name="tiny-gpt2")


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


@pytest.fixture
def steering_actions(tiny_session, tmp_path):
    """The Steering tab's handlers on the tiny Llama, with one joy-minus-grief
    vector added at layer 1, alpha 2."""
    from tests.support.forms import steering_actions_with_example

    return steering_actions_with_example(tiny_session, tmp_path)


@pytest.fixture
def optimize_actions(tiny_session, steering_actions):
    """The Optimize tab's handlers on the same model and vector."""
    from ui.optimize_tab import OptimizeActions

    return OptimizeActions(tiny_session, steering_actions.save_dir)
