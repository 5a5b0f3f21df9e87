"""The bench's own machinery (no model): interleaved rounds, paired ratios,
the markdown table, the command line. The benchmarks themselves run with
`python -m bench`; nothing here asserts a timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import Timing, interleaved, ratio, table
from bench.run import _parser, _settings

REPO = Path(__file__).resolve().parents[2]


def test_rounds_rotate_the_order_and_warm_up_untimed():
    calls = []
    variants = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    setups = {"b": lambda: calls.append("setup b")}
    timings = interleaved(variants, rounds=3, setup=setups, warmup_skip=("c",))
    assert calls == [
        "a", "setup b", "b",  # warm-up, c skipped
        "a", "setup b", "b", "c",
        "setup b", "b", "c", "a",
        "c", "a", "setup b", "b",
    ]
    assert all(len(t.wall) == 3 and len(t.cpu) == 3 for t in timings.values())


def test_a_ratio_pairs_the_rounds():
    slow = Timing(wall=[2.0, 9.0, 3.0], cpu=[2.0, 2.0, 3.0])
    fast = Timing(wall=[1.0, 3.0, 1.0], cpu=[1.0, 1.0, 1.0])
    r = ratio(slow, fast)
    assert (r.median, r.low, r.high, r.cpu_median, r.best) == (3.0, 2.0, 3.0, 2.0, 2.0)


def test_markdown_table():
    assert table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"


def test_quick_and_default_settings():
    args = _parser().parse_args(["--quick"])
    quick = _settings(args, 30)
    default = _settings(_parser().parse_args([]), 30)
    assert quick["rounds_b"] < default["rounds_b"] and quick["limit"] == 40
    assert default["limit"] is None and default["scaling_layers"] == [3, 21, 27]
    assert (default["particles"], default["iterations"], default["opt_limit"]) == (8, 5, 50)
    none = _settings(_parser().parse_args(["--scaling-layers", "none"]), 30)
    assert none["scaling_layers"] == []


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["nonsense"], 2)])
def test_command_line(argv, code):
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv], cwd=REPO, capture_output=True, text=True,
        check=False,
    )
    assert done.returncode == code
    if code:
        assert "unknown benchmark 'nonsense'" in done.stderr
    else:
        assert "generation" in done.stdout and "--quick" in done.stdout


def test_new_bench_settings():
    default = _settings(_parser().parse_args([]), 30)
    quick = _settings(_parser().parse_args(["--quick"]), 30)
    assert (default["demo_limit"], default["seeds"], default["strategy_limit"]) == (100, 5, 40)
    assert quick["seeds"] < default["seeds"] and quick["demo_limit"] < default["demo_limit"]


def test_evaluations_to_reach_count_distinct_settings():
    from bench.strategies import _to_reach
    from optimize.config.space import Setting
    from optimize.run.results import Evaluation
    from optimize.scoring.metrics import Metrics

    def visit(layer, score, cached=False):
        return Evaluation.scored(
            0, 0, Setting((layer,), (1.0,)), Metrics.of_target(score), 0.0, cached
        )

    history = [visit(1, 0.5), visit(1, 0.5, True), visit(2, 0.6), visit(3, 0.9)]
    assert _to_reach(history, 0.6) == 2  # the revisit of layer 1 is not a new evaluation
    assert _to_reach(history, 0.85) == 3
    assert _to_reach(history, 0.95) is None


def test_a_held_out_split_keeps_the_later_documents(tmp_path):
    from bench.strategies import _split

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "data.jsonl").write_text("".join(f'{{"i": {i}}}\n' for i in range(5)))
    (tmp_path / "t.yaml").write_text("task: t\ndata_files:\n  test: t/data.jsonl\n")
    name = _split(tmp_path, "t", 3)
    assert name == "t_rest"
    assert (
        tmp_path / "t_rest.yaml"
    ).read_text() == "task: t_rest\ndata_files:\n  test: t/rest.jsonl\n"
    assert (tmp_path / "t" / "rest.jsonl").read_text() == '{"i": 3}\n{"i": 4}\n'


def test_the_demo_runs_this_codes_default_run_with_a_command_this_cli_takes():
    """(e) runs this code with the demo's tasks and nothing else (its default
    run): the current command line must accept it (a renamed flag would only
    show as a failed run an hour into the benchmark), and what it runs must
    be the defaults."""
    from bench.demo import TASK, VARIANTS
    from optimize.cli import _parser as optimize_parser
    from optimize.config.table import BY_NAME, CLI, fields
    from optimize.run.settings import RunSettings

    assert VARIANTS["now"] == ()
    args = optimize_parser().parse_args(
        ["--vectors", "v.safetensors", *TASK, *VARIANTS["now"], "--seed", "3"]
    )
    given = {f.name: getattr(args, f.name) for f in fields(CLI) if hasattr(args, f.name)}
    settings = RunSettings.from_values(given)  # the flags agree with each other
    assert (settings.pso.particles, settings.pso.iterations, settings.pso.seed) == (
        BY_NAME["particles"].default, BY_NAME["iterations"].default, 3
    )
    assert settings.heldout is not None
    tasks = (settings.fitness.task, settings.heldout.task)
    assert tasks == ("sentiment_search", "sentiment_heldout")


def test_the_verdicts_bench_is_a_benchmark_with_its_seeds():
    args = _parser().parse_args(["verdicts", "--seeds", "2"])
    assert args.benches == ["verdicts"] and args.seeds == 2


def test_profile_and_strategy_grid_options():
    args = _parser().parse_args(["profile", "strategies", "--strategy-decimals", "0"])
    assert args.benches == ["profile", "strategies"] and args.strategy_decimals == 0
    assert _parser().parse_args([]).strategy_decimals == 1
    args = _parser().parse_args(["strategies", "--strategy-tasks", "demo,steer_health"])
    assert args.strategy_tasks == "demo,steer_health"
    assert _parser().parse_args([]).strategy_tasks is None


def test_cpu_timer_keeps_the_least_of_its_calls():
    from bench.profile import _cpu

    calls = []
    seconds, result = _cpu(lambda: calls.append(1) or len(calls), repeat=3)
    assert result == 3 and len(calls) == 3 and seconds >= 0.0


def test_the_demo_runs_are_collected_as_each_ends_each_with_its_own_figures():
    """(e) reaps the runs in the order they end (a fixed order gave a run
    that ended early the wall time of a later one); each keeps its own output."""
    import subprocess
    import sys
    import time

    from bench.demo import _finish_all

    def run(seconds):
        code = (
            f"import time; time.sleep({seconds}); print('31 evaluations (2 cached) in {seconds} s')"
        )
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    runs = _finish_all({"later": run(0.6), "sooner": run(0.0)}, time.perf_counter())
    assert list(runs) == ["later", "sooner"]  # in the order given, whatever the order they ended
    assert (runs["later"]["run_s"], runs["sooner"]["run_s"]) == (0.6, 0.0)
    assert all(r["cpu_s"] >= 0 and r["wall_s"] >= 0 for r in runs.values())


def test_the_kl_sentences_bench_measures_subsets_against_the_full_set(
    tiny, monkeypatch, tmp_path
):
    """On the tiny Llama: every aimed setting is scored once on the whole
    neutral set, the evenly spaced subsets' errors are those of guards built
    on them, and the chosen size is the smallest that meets the criterion."""
    import functools

    import torch

    from bench import kl_sentences
    from bench._common import Bench
    from optimize.guard.kl import KlGuard
    from steering import neutral, steerer_for

    # a neutral set of 100 sentences (every third shipped one) stands for the
    # 310: the bench's work grows with the set, what it computes does not change
    shipped = neutral.neutral_sentences()
    smaller = tmp_path / "neutral.txt"
    smaller.write_text("\n".join(shipped[::3][:100]) + "\n", encoding="utf-8")
    neutral_sentences = functools.partial(neutral.neutral_sentences, smaller)
    monkeypatch.setattr(neutral, "neutral_sentences", neutral_sentences)
    monkeypatch.setattr(kl_sentences, "KL_RANGE", (0.0, float("inf")))
    monkeypatch.setattr(kl_sentences, "SIZES", (10, 50))
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    result = kl_sentences.run(Bench(tiny, steerer), layers=(2, 9), draws=20)
    settings = result["settings"]
    assert {s["layer"] for s in settings} == {2} and len(settings) == 4 * 3
    assert {s["vector"] for s in settings} == {
        "preset", "joy/grief", "sentiment pairs", "health pairs"
    }
    positions = torch.tensor(result["positions"])
    first = settings[0]
    totals = torch.tensor(first["sentence_kl"])
    assert float(totals.sum() / positions.sum()) == pytest.approx(first["kl"])
    # the evenly spaced 10: the error of a guard built on them
    from steering.capture import capture

    source = kl_sentences._sources(20)[first["vector"]]
    vector = capture(steerer, source, 2, 1.0).with_strength(first["strength"])
    ten = KlGuard(steerer, neutral_sentences(count=10)).evaluate([vector]).kl
    # (batched differently: float32 sums agree to about 1e-5 of the KL, not exactly)
    assert result["sizes"][10]["evenly_spaced"][0] == pytest.approx(ten / first["kl"] - 1, abs=1e-4)
    meets = [n for n in (10, 50) if result["sizes"][n]["random_within"] >= 0.95
             and result["sizes"][n]["even_within"] >= 0.95]
    assert result["chosen"] == (meets[0] if meets else 100)
    assert "| n |" in result["markdown"] and steerer.vectors == ()
