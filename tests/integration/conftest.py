"""Fixtures of the integration tests: the two small lm-eval tasks, written
once per session (tests/support/tasks.py says what is in them), the tiny
Llama with the two vectors an optimization starts from, and the two command
lines run in this process.

The command lines run in-process (`optimize.cli.main(argv)`,
`steering.__main__.main(argv)`): a new Python costs seconds of imports and,
for SmolLM2, a second model load. Tests where a real process is the point
(signals, a SIGKILL, a crash) start one themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from steering import Steerer, capture_vector, steerer_for
from steering.models import LoadedModel
from tests.support.tasks import write_choices_task, write_sentiment_task


@pytest.fixture(scope="session")
def sentiment_task(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The folder of `tiny_sentiment` and its companions (tag, group, held-out)."""
    return write_sentiment_task(tmp_path_factory.mktemp("sentiment_task"))


@pytest.fixture(scope="session")
def choices_task(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The folder of `tiny_choices` (one- and multi-token choices)."""
    return write_choices_task(tmp_path_factory.mktemp("choices_task"))


@pytest.fixture
def steerer(tiny: LoadedModel) -> Iterator[Steerer]:
    """The tiny model's Steerer with two active vectors: [0] is optimized, [1] is not."""
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    joy = capture_vector(
        steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate this day", "so sad"]
    )
    calm = capture_vector(steerer, ["calm and quiet"], 2, 0.5)
    steerer.set_vectors([joy, calm])
    yield steerer
    steerer.reset()


@dataclass(frozen=True)
class CliRun:
    """What a command line returned and printed."""

    code: int
    out: str
    err: str


# The loggers `python -m optimize` quiets for its own run (optimize/cli.py);
# restored after each in-process run so that other tests see them as before.
QUIETED_LOGGERS = ("lm_eval", "transformers", "datasets")


def _cli(
    main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliRun]:
    def run(*argv: str) -> CliRun:
        capsys.readouterr()  # only this run's output
        levels = {name: logging.getLogger(name).level for name in QUIETED_LOGGERS}
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help and usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run


@pytest.fixture
def optimize_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """`optimize_cli(*argv)`: `python -m optimize ARGV`, in this process."""
    from optimize.cli import main

    return _cli(main, capsys)


@pytest.fixture
def steering_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """`steering_cli(*argv)`: `python -m steering ARGV`, in this process."""
    from steering.__main__ import main

    return _cli(main, capsys)


@pytest.fixture
def embedded_loads(
    smollm2: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[object, ...]]:
    """A command line run in this process that loads the embedded SmolLM2
    (load_model with no model and no file) gets this session's SmolLM2
    instead of a second copy; each such call is recorded in the list returned."""
    import steering
    import steering.__main__
    import steering.models

    real = steering.models.load_model
    asked: list[tuple[object, ...]] = []

    def load(
        model: str | None = None, gguf_file: str | None = None, device: str | None = None
    ) -> LoadedModel:
        if model is None and gguf_file is None:
            asked.append((model, gguf_file, device))
            return smollm2
        return real(model, gguf_file, device)

    for module in (steering, steering.models, steering.__main__):
        monkeypatch.setattr(module, "load_model", load)
    return asked
