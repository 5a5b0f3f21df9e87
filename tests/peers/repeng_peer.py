"""repeng's side of the GGUF interchange test (tests/e2e/test_gguf_peers.py).

Runs in .venv-repeng (repeng 0.4.0 needs numpy < 2) and uses only repeng,
transformers and numpy, never steerswarm, so it is an independent oracle:

    python repeng_peer.py MODEL_FOLDER GGUF_FILE WORKDIR

reads WORKDIR/request.json ({"input_ids": [...], "coeff": c, "repeng_layers":
[...], "seed": s}) and WORKDIR/ours.gguf (exported by steerswarm), and writes
WORKDIR/repeng.gguf (a vector made here, exported with repeng's export_gguf)
and WORKDIR/logits.npz: the unsteered logits, the logits with ours.gguf loaded
by repeng (coefficient 1), and with repeng.gguf at coefficient `coeff`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from repeng import ControlModel, ControlVector
from transformers import AutoModelForCausalLM


def steered_logits(model, vector: ControlVector, coeff: float, ids: torch.Tensor) -> np.ndarray:
    """Logits with `vector` applied the way repeng applies it (ControlModel
    wraps the layers; the model is unwrapped again after)."""
    control = ControlModel(model, sorted(vector.directions))
    try:
        control.set_control(vector, coeff)
        with torch.no_grad():
            return control(ids).logits[0].float().numpy()
    finally:
        control.unwrap()


def main(folder: str, gguf_file: str, workdir: str) -> None:
    work = Path(workdir)
    request = json.loads((work / "request.json").read_text())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    model.eval()
    ids = torch.tensor([request["input_ids"]])
    with torch.no_grad():
        base = model(ids).logits[0].float().numpy()

    ours = ControlVector.import_gguf(work / "ours.gguf")
    ours_logits = steered_logits(model, ours, 1.0, ids)

    rng = np.random.default_rng(request["seed"])
    hidden = model.config.hidden_size
    theirs = ControlVector(
        model_type=model.config.model_type,
        directions={
            layer: rng.normal(0.0, 0.5, hidden).astype(np.float32)
            for layer in request["repeng_layers"]
        },
    )
    theirs.export_gguf(work / "repeng.gguf")
    theirs_logits = steered_logits(model, theirs, request["coeff"], ids)
    np.savez(work / "logits.npz", base=base, ours=ours_logits, theirs=theirs_logits)
    print(f"repeng peer: numpy {np.__version__}, directions of ours.gguf {sorted(ours.directions)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
