"""llama.cpp's side of bench/llama_cpp_control_vector.py.

Runs in .venv-llama (llama-cpp-python 0.3.36, which compiles llama.cpp, plus
the gguf package) and imports nothing of steerswarm, so what it measures is
llama.cpp's own behaviour:

    python bench/llama_cpp_side.py WORKDIR

reads WORKDIR/request.json ({"model": GGUF path, "vector": control vector
path, "prompts": [[token ids], ...], "shifts": [0, -1, 1]}) and writes
WORKDIR/llama_cpp.npz: per prompt, the next-token log-probabilities without
the control vector ("base") and with it ("shift_S"), for each shift S of its layers (0 is the file
as written; +-1 moves every direction one layer up or down, as a control).

The file is read the way llama.cpp's common_control_vector_load does
(common/common.cpp): `direction.N` fills the buffer at (N - 1) * n_embd, the
buffer starts at layer 1, and llama_set_adapter_cvec copies it into the
per-layer tensors that build_cvec adds to each layer's output.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import numpy as np


def read_directions(path: str) -> dict[int, np.ndarray]:
    reader = gguf.GGUFReader(path)
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        index = int(tensor.name.split(".")[1])
        directions[index] = directions.get(index, 0) + np.array(tensor.data, dtype=np.float32)
    return directions


def buffer_for(directions: dict[int, np.ndarray], n_embd: int, shift: int) -> np.ndarray:
    """common_control_vector_load's buffer, every direction moved by `shift` layers."""
    top = max(directions) + shift
    data = np.zeros(n_embd * top, dtype=np.float32)
    for index, direction in directions.items():
        layer = index + shift
        if layer < 1:
            raise ValueError(f"direction.{index} shifted by {shift} leaves llama.cpp's layers")
        data[n_embd * (layer - 1) : n_embd * layer] += direction
    return data


def log_probs(llm: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    logits -= logits.max()
    return logits - np.log(np.exp(logits).sum())


def main(workdir: str) -> None:
    work = Path(workdir)
    request = json.loads((work / "request.json").read_text())
    llm = llama_cpp.Llama(
        model_path=request["model"], n_ctx=256, n_threads=2, n_batch=256, seed=0,
        logits_all=True, verbose=False,  # else eval keeps no logits (llama.py, Llama.eval)
    )
    n_embd = llm.n_embd()
    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    directions = read_directions(request["vector"])
    result: dict[str, Any] = {
        "base": np.stack([log_probs(llm, tokens) for tokens in request["prompts"]])
    }
    for shift in request["shifts"]:
        data = buffer_for(directions, n_embd, shift)
        pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        # llama.cpp's defaults when no --control-vector-layer-range is given: 1 .. n_layer.
        err = llama_cpp.llama_set_adapter_cvec(llm.ctx, pointer, data.size, n_embd, 1, n_layer)
        if err:
            raise RuntimeError(f"llama_set_adapter_cvec failed with {err}")
        result[f"shift_{shift}"] = np.stack([log_probs(llm, t) for t in request["prompts"]])
        llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, -1, -1)
    np.savez(work / "llama_cpp.npz", **result)
    print(f"llama-cpp-python {llama_cpp.__version__}: n_embd {n_embd}, n_layer {n_layer}")

if __name__ == "__main__":
    main(sys.argv[1])
