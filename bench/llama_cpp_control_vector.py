"""Does a vector exported here steer llama.cpp the way it steers Transformers?

    .venv/bin/python -m bench.llama_cpp_control_vector [--layer 12] [--alpha 4]

Needs .venv-llama: `python3 -m venv .venv-llama && .venv-llama/bin/pip install
llama-cpp-python==0.3.36 gguf==0.19.0` (it compiles llama.cpp: tens of
minutes on 2 cores). Not part of CI. STEERSWARM_LLAMA_PYTHON names another
interpreter that imports llama_cpp (llama-cpp-python reads its compiled
libraries from LLAMA_CPP_LIB_PATH when set).

It captures a love-vs-hate difference-of-means vector on SmolLM2 (the
Transformers model, float32, dequantised from the embedded Q4_1 GGUF), exports
it with steering.gguf, and measures the next-token log-probability shift it
causes on a few prompts, here (our hook, the state entering `--layer`) and in
llama.cpp (bench/llama_cpp_side.py: the same Q4_1 GGUF, the same token ids,
the exported file applied with llama_set_adapter_cvec). As a control, the
llama.cpp side also applies the file moved one layer down and one layer up:
if the layer mapping is exact, the unmoved file agrees best.

Per prompt it reports, over the 100 tokens most likely before steering: the
correlation of the two engines' shifts, the share of clearly moved tokens
(|shift| > 0.1 here) whose shift has the same sign there, and the ratio of
the shifts' sizes (llama.cpp / Transformers). Results go to
bench/results/llama_cpp_control_vector.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench._common import REPO, RESULTS, log
from steering.capture import capture_vector
from steering.engine import steerer_for
from steering.gguf import export_control_vector
from steering.models import EMBEDDED_GGUF, embedded_model_folder, load_model

LLAMA_PYTHON = Path(
    os.environ.get("STEERSWARM_LLAMA_PYTHON", REPO / ".venv-llama" / "bin" / "python")
)
LOVE = [
    "I love you so much, you make me happy.",
    "What a wonderful, lovely day with my dear friends.",
    "She adores her family and cherishes every moment.",
    "Thank you, this is beautiful and I am grateful.",
]
HATE = [
    "I hate you so much, you make me furious.",
    "What a horrible, hateful day with my awful enemies.",
    "She despises her family and resents every moment.",
    "Get away from me, this is disgusting and I am angry.",
]
PROMPTS = [
    "My feelings about my neighbour are",
    "Honestly, I think this movie is",
    "When I see her, I feel",
    "The new boss at work is",
    "Write one word about cats:",
    "Yesterday the weather was",
]
TOP = 100
SHIFTS = (0, -1, 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", type=int, default=12, help="our layer (the state entering it)")
    parser.add_argument("--alpha", type=float, default=4.0)
    return parser


def _compare(ours: np.ndarray, theirs: np.ndarray, top: np.ndarray) -> dict[str, float]:
    a, b = ours[top], theirs[top]
    moved = np.abs(a) > 0.1
    return {
        "correlation": float(np.corrcoef(a, b)[0, 1]),
        "same_sign": (
            float(np.mean(np.sign(a[moved]) == np.sign(b[moved]))) if moved.any() else float("nan")
        ),
        "size_ratio": float(np.linalg.norm(b) / np.linalg.norm(a)),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not LLAMA_PYTHON.exists():
        print(f"No llama-cpp-python environment at {LLAMA_PYTHON}; see this script's docstring.")
        return 2
    torch.set_num_threads(2)
    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    log(f"capturing love - hate at layer {args.layer}")
    vector = capture_vector(steerer, LOVE, args.layer, args.alpha, HATE)
    bos = loaded.tokenizer.bos_token_id
    prompts = [[bos, *loaded.tokenizer.encode(p, add_special_tokens=False)] for p in PROMPTS]
    ours: dict[str, np.ndarray] = {}
    for name, vectors in (("base", ()), ("steered", (vector,))):
        rows = []
        with steerer.applied(vectors), torch.no_grad():
            for tokens in prompts:
                logits = loaded.model(torch.tensor([tokens])).logits[0, -1].double()
                rows.append(torch.log_softmax(logits, -1).numpy())
        ours[name] = np.stack(rows)
    with tempfile.TemporaryDirectory() as work:
        control = export_control_vector(Path(work) / "love.gguf", [vector], steerer.info)
        request = {
            "model": str(embedded_model_folder() / EMBEDDED_GGUF),
            "vector": str(Path(work) / "love.gguf"),
            "prompts": prompts,
            "shifts": list(SHIFTS),
        }
        (Path(work) / "request.json").write_text(json.dumps(request))
        log(f"llama.cpp side ({LLAMA_PYTHON})")
        done = subprocess.run(
            [str(LLAMA_PYTHON), str(REPO / "bench" / "llama_cpp_side.py"), work],
            capture_output=True, text=True, timeout=1800, check=False,
        )
        if done.returncode != 0:
            print(done.stdout, done.stderr[-4000:])
            return 1
        theirs = dict(np.load(Path(work) / "llama_cpp.npz"))
    report = _report(args, vector, control.layer_range, ours, theirs, done.stdout.strip())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llama_cpp_control_vector.json").write_text(json.dumps(report, indent=2))
    print(_table(report))
    return 0


def _report(args, vector, layer_range, ours, theirs, llama_line: str) -> dict:
    ours_shift = ours["steered"] - ours["base"]
    rows = []
    for i, prompt in enumerate(PROMPTS):
        top = np.argsort(-ours["base"][i])[:TOP]
        row = {
            "prompt": prompt,
            "base_gap": float(np.max(np.abs(ours["base"][i][top] - theirs["base"][i][top]))),
            "kl_here": _kl(ours["steered"][i], ours["base"][i]),
            "kl_llama_cpp": _kl(theirs["shift_0"][i], theirs["base"][i]),
        }
        for shift in SHIFTS:
            theirs_shift = theirs[f"shift_{shift}"][i] - theirs["base"][i]
            row[f"shift_{shift}"] = _compare(ours_shift[i], theirs_shift, top)
        rows.append(row)
    return {
        "layer": args.layer,
        "alpha": args.alpha,
        "direction_norm": vector.norm,
        "llama_cpp_layer_range": list(layer_range),
        "llama_cpp": llama_line,
        "prompts": rows,
    }


def _kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    return float(np.sum(np.exp(p_log) * (p_log - q_log)))


def _table(report: dict) -> str:
    lines = [
        (f"layer {report['layer']} (direction.{report['llama_cpp_layer_range'][0]}), alpha "
         f"{report['alpha']}, |V| {report['direction_norm']:.2f}; {report['llama_cpp']}"),
        ("| prompt | corr | same sign | size ratio | KL here | KL llama.cpp"
         " | corr -1 layer | corr +1 layer | base gap |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["prompts"]:
        exact = row["shift_0"]
        lines.append(
            f"| {row['prompt']} | {exact['correlation']:.3f} | {exact['same_sign']:.2f} | "
            f"{exact['size_ratio']:.2f} | {row['kl_here']:.3f} | {row['kl_llama_cpp']:.3f} | "
            f"{row['shift_-1']['correlation']:.3f} | {row['shift_1']['correlation']:.3f} | "
            f"{row['base_gap']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
