"""`python -m bench [generation] [particle] [optimization] [batch] [demo] [strategies]
[profile] [verdicts] [serving] [kl-sentences] [options]`

Runs the chosen benchmarks (all by default) on the embedded SmolLM2 (or
--model), prints a markdown report on stdout, progress on stderr, and writes
one JSON file per benchmark (plus report.md) under bench/results/. On a
quiet 2-core CPU the first three take about 10 minutes (--quick about 3);
`demo` (the old code and this code's default run side by side, 5 seeds)
about 40, `strategies` (3 strategies x 5 seeds x 3 tasks) about 20 more, and
`verdicts` (the default run on every shipped task and the demo, 5 seeds) about 30,
`serving` (four differently steered API requests, batched vs one after another)
about 2, `kl-sentences` (the KL guard's error against the number of neutral
sentences) about 15.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCHES = (
    "generation", "particle", "optimization", "batch", "demo", "strategies", "profile", "verdicts",
    "serving", "kl-sentences",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of steered generation, one particle evaluation and a "
        "whole optimization. Every figure is a ratio of variants timed side by side.",
    )
    p.add_argument(
        "benches", nargs="*", metavar="BENCH",
        help=f"which to run: {', '.join(BENCHES)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="fewer rounds and documents (~3 min)")
    p.add_argument(
        "--long", action="store_true", help="more rounds, and (c) also without the prefix cache"
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds for (a) and (b)")
    p.add_argument("--model", default=None, help="model folder or hub id (default: SmolLM2)")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --model")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", default=None, metavar="DIR", help="results (default: bench/results)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g = p.add_argument_group("(a) generation")
    g.add_argument("--tokens", type=int, default=None, help="new tokens per reply (default: 24)")
    g = p.add_argument_group("(b) one particle evaluation")
    g.add_argument("--task", default="steer_sentiment", help="task (default: steer_sentiment)")
    g.add_argument("--limit", type=int, default=None, help="documents, 0 for all (default: all)")
    g.add_argument("--batch-size", type=int, default=None, help="fitness batch size (default: 8)")
    g.add_argument("--layer", type=int, default=None, help="the particle's layer (default: 0.4 N)")
    g.add_argument("--alpha", type=float, default=4.0, help="the particle's alpha (default: 4)")
    g.add_argument(
        "--scaling-layers", default=None, metavar="L,L",
        help="more layers for the prefix-cache scaling (default: 0.1, 0.7, 0.9 of the depth; "
        "'none' to skip)",
    )
    g.add_argument("--no-prototype", action="store_true", help="skip the prototype variant")
    g = p.add_argument_group("(c) a whole optimization")
    g.add_argument("--opt-task", default="steer_sentiment", help="task (default: steer_sentiment)")
    g.add_argument("--opt-limit", type=int, default=None, help="documents (default: 50)")
    g.add_argument("--particles", type=int, default=None, help="particles (default: 8)")
    g.add_argument("--iterations", type=int, default=None, help="iterations (default: 5)")
    g.add_argument("--seed", type=int, default=0, help="swarm seed (default: 0)")
    g = p.add_argument_group(
        "(d) batched iteration, (e) demo end to end, (f) strategies, (g) profile of one evaluation"
    )
    g.add_argument(
        "--demo-limit", type=int, default=None, help="demo items, (e) and (g) (default: 100)"
    )
    g.add_argument(
        "--old-commit", default=None, help="code the demo is compared with (default: dd9a8a2)"
    )
    g.add_argument(
        "--seeds", type=int, default=None, help="seeds of (e), (f) and (h) (default: 5)"
    )
    g.add_argument(
        "--strategy-limit", type=int, default=None, help="documents per search (default: 40)"
    )
    g.add_argument(
        "--strategy-tasks", default=None, metavar="T,T",
        help="tasks of (f), in order (default: steer_sentiment,steer_health,demo)",
    )
    g.add_argument(
        "--strategy-decimals", type=int, default=1,
        help="alpha decimals of the strategies' search space (default: 1; 0 for a coarse, "
        "cheaper grid of whole alphas)",
    )
    g = p.add_argument_group("(j) the KL guard's error against its number of neutral sentences")
    g.add_argument(
        "--kl-draws", type=int, default=None,
        help="random subsets per setting and size (default: 1000)",
    )
    g = p.add_argument_group("(i) serving: four differently steered requests sent together")
    g.add_argument(
        "--serve-tokens", type=int, default=32, help="new tokens per request (default: 32)"
    )
    return p


def _settings(args: argparse.Namespace, num_layers: int) -> dict[str, Any]:
    quick, long = args.quick, args.long
    rounds_a = args.rounds or (4 if quick else 20 if long else 10)
    rounds_b = args.rounds or (2 if quick else 5 if long else 3)
    if args.scaling_layers is None:
        fractions = (0.1, 0.9) if quick else (0.1, 0.7, 0.9)
        scaling = sorted({min(num_layers - 1, round(f * num_layers)) for f in fractions})
    elif args.scaling_layers.strip().lower() == "none":
        scaling = []
    else:
        scaling = [int(v) for v in args.scaling_layers.split(",") if v.strip()]
    limit = args.limit if args.limit is not None else (40 if quick else 0)
    return {
        "tokens": args.tokens or 24,
        "rounds_a": rounds_a,
        "rounds_b": rounds_b,
        "limit": None if limit == 0 else limit,
        "scaling_layers": scaling,
        "opt_limit": args.opt_limit or (20 if quick else 50),
        "particles": args.particles or (4 if quick else 8),
        "iterations": args.iterations or (3 if quick else 5),
        "demo_limit": args.demo_limit or (20 if quick else 100),
        "seeds": args.seeds or (2 if quick else 5),
        "strategy_limit": args.strategy_limit or (20 if quick else 40),
        "rounds_serving": args.rounds or (2 if quick else 5),
        "kl_draws": args.kl_draws or (200 if quick else 1000),
    }


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("lm_eval", "transformers", "datasets", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    _quiet()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from bench import (
        batch,
        demo,
        generation,
        kl_sentences,
        optimization,
        particle,
        profile,
        serving,
        strategies,
        verdicts,
    )
    from bench._common import RESULTS, Bench, log, machine, machine_line, write_json

    chosen = list(dict.fromkeys(args.benches)) or list(BENCHES)
    out = Path(args.out) if args.out else RESULTS
    # (e) runs the demo in processes of its own: alone, it needs no model here
    bench = (
        None if chosen == ["demo"] else Bench.load(args.model, args.gguf_file, args.device)
    )
    model_name = "SmolLM2 (in the demo's own processes)" if bench is None else bench.loaded.name
    info = machine()
    settings = _settings(args, 30 if bench is None else bench.num_layers)
    log(f"machine: {machine_line(info)}")
    load = info.get("load_average", (0.0,))[0]
    if load > (info["cores"] or 1) and info["torch_threads"] > 1:
        log(
            f"warning: load average {load:.1f} on {info['cores']} cores: other jobs share the "
            "CPU and torch's threads will wait on each other; --threads 1 gives steadier figures"
        )
    sections = [
        "## Benchmarks",
        (f"Model {model_name} on {info['device']}: {machine_line(info)}. "
         f"Load average at start: {', '.join(f'{v:.1f}' for v in info.get('load_average', ()))}."),
    ]
    print("\n\n".join(sections) + "\n", flush=True)
    for name in chosen:
        if name == "demo":
            commit = args.old_commit or demo.OLD_COMMIT
            result = demo.run(settings["demo_limit"], args.threads or 1, commit, settings["seeds"])
        elif bench is None:  # loaded unless the demo alone was chosen
            raise RuntimeError(f"the {name} benchmark needs the model loaded")
        elif name == "generation":
            result = generation.run(bench, settings["tokens"], settings["rounds_a"])
        elif name == "particle":
            result = particle.run(
                bench,
                args.task,
                settings["limit"],
                args.batch_size,
                settings["rounds_b"],
                args.layer,
                args.alpha,
                settings["scaling_layers"],
                prototype=not args.no_prototype,
            )
        elif name == "batch":
            limit = settings["limit"]
            result = batch.run(bench, args.task, limit, 6, settings["rounds_b"], args.seed)
        elif name == "profile":
            result = profile.run(bench, settings["demo_limit"])
        elif name == "verdicts":
            result = verdicts.run(bench, seeds=settings["seeds"])
        elif name == "kl-sentences":
            result = kl_sentences.run(bench, draws=settings["kl_draws"], seed=args.seed)
        elif name == "serving":
            result = serving.run(bench, args.serve_tokens, settings["rounds_serving"])
        elif name == "strategies":
            tasks: dict[str, Any] = (
                {"tasks": tuple(args.strategy_tasks.split(","))} if args.strategy_tasks else {}
            )
            result = strategies.run(
                bench, seeds=settings["seeds"], limit=settings["strategy_limit"],
                alpha_decimals=args.strategy_decimals, **tasks,
            )
        else:
            result = optimization.run(
                bench,
                args.opt_task,
                settings["opt_limit"],
                args.batch_size,
                settings["particles"],
                settings["iterations"],
                args.seed,
                compare_uncached=args.long,
            )
        path = write_json(name, {"machine": info, "model": model_name, **result}, out)
        log(f"wrote {path}")
        sections.append(result["markdown"])
        print(result["markdown"] + "\n", flush=True)
    report = "\n\n".join(sections) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    log(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
