"""The GGUF interchange against the real repeng, on SmolLM2.

repeng 0.4.0 needs numpy < 2, so its side runs in .venv-repeng (made by
scripts/install_repeng.sh, which `scripts/install.sh --test` runs) as
tests/peers/repeng_peer.py, which uses no steerswarm code. A vector exported
here and loaded by repeng's ControlVector.import_gguf + ControlModel, and a
vector repeng made and exported with export_gguf and imported here, must give
the same logits in both (within 1e-4).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import torch

from steering import steerer_for
from steering.extract import VectorSource
from steering.gguf import export_control_vector, import_control_vector
from steering.models import EMBEDDED_GGUF, embedded_model_folder
from steering.vector import SteeringVector

ROOT = Path(__file__).resolve().parents[2]
REPENG_LAYERS = [4, 9, 17]  # repeng's layer ids: the outputs of these layers
REPENG_COEFF = 1.5


def _vector(layer: int, alpha: float, seed: int, size: int) -> SteeringVector:
    direction = torch.randn(size, generator=torch.Generator().manual_seed(seed)) * 0.5
    return SteeringVector(layer, alpha, direction, VectorSource.from_prompts([f"v{seed}"]))


def test_vectors_cross_between_steerswarm_and_repeng_with_the_same_logits(
    repeng_python, smol, tmp_path
):
    steerer = steerer_for(smol.model, smol.tokenizer, smol.name)
    size = steerer.info.hidden_size
    ours = [_vector(6, 2.0, 1, size), _vector(12, -1.0, 2, size), _vector(12, 0.5, 3, size)]
    export_control_vector(tmp_path / "ours.gguf", ours, steerer.info)
    tokens = smol.tokenizer.encode("The weather today is", add_special_tokens=False)
    ids = [smol.tokenizer.bos_token_id, *tokens]
    request = {"input_ids": ids, "coeff": REPENG_COEFF, "repeng_layers": REPENG_LAYERS, "seed": 7}
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = subprocess.run(
        [str(repeng_python), str(ROOT / "tests" / "peers" / "repeng_peer.py"),
         str(embedded_model_folder()), EMBEDDED_GGUF, str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "numpy 1.26" in done.stdout and "[5, 11]" in done.stdout, done.stdout
    repeng = np.load(tmp_path / "logits.npz")

    def logits(vectors) -> np.ndarray:
        with steerer.applied(vectors), torch.no_grad():
            return smol.model(torch.tensor([ids])).logits[0].float().numpy()

    np.testing.assert_allclose(logits(()), repeng["base"], rtol=0, atol=1e-4)
    steered = logits(ours)
    assert np.abs(steered - repeng["base"]).max() > 1.0  # the vectors do steer
    np.testing.assert_allclose(repeng["ours"], steered, rtol=0, atol=1e-4)

    imported = import_control_vector(tmp_path / "repeng.gguf", steerer.info, scale=REPENG_COEFF)
    assert [v.layer for v in imported.vectors] == [layer + 1 for layer in REPENG_LAYERS]
    theirs = logits(imported.vectors)
    assert np.abs(theirs - repeng["base"]).max() > 1.0
    np.testing.assert_allclose(theirs, repeng["theirs"], rtol=0, atol=1e-4)
    print(  # the figures docs/gguf.md reports (pytest -s shows them)
        f"max |logit difference|: ours in repeng {np.abs(repeng['ours'] - steered).max():.2e}, "
        f"repeng's here {np.abs(theirs - repeng['theirs']).max():.2e}, "
        f"steering moved them by up to {np.abs(steered - repeng['base']).max():.2f} "
        f"and {np.abs(theirs - repeng['base']).max():.2f}"
    )
