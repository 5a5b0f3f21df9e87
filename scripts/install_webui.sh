#!/usr/bin/env bash
# Builds the real text-generation-webui for the tests in tests/test_real_webui*.py,
# offline, into ./.webui (ignored by git):
#   1. unpacks the webui tree at 1dcde41 from ../shared/webui (beside the repo),
#   2. builds its venv as ../shared/webui/README.md does (torch 2.13.0 CPU, the
#      webui's CPU requirements without the https:// wheels, its Gradio fork),
#   3. installs this extension as our README tells users: the project's files in
#      user_data/extensions/steerswarm and `pip install -r .../requirements.txt`,
#   4. writes SmolLM2-135M-Instruct (from the embedded GGUF) as a float32
#      Transformers folder in user_data/models/SmolLM2-135M-Instruct.
# Skips everything when .webui/READY names the same inputs (the tarball, the
# wheels and our requirements files); otherwise rebuilds from scratch.
# Needs ./.venv (scripts/install.sh) for step 4.
# Usage: scripts/install_webui.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SHARED="$(cd "${STEERSWARM_WEBUI_SHARED:-../shared/webui}" && pwd)"
DEST="$ROOT/.webui"
TREE="$DEST/text-generation-webui"
EXT="$TREE/user_data/extensions/steerswarm"
MODEL="$TREE/user_data/models/SmolLM2-135M-Instruct"
PIP=(--disable-pip-version-check -q --no-compile)

STAMP="$( (cd "$SHARED" && sha256sum text-generation-webui-*.tar.gz gradio*.whl) ;
          sha256sum requirements.txt requirements-webui.txt scripts/install_webui.sh)"
if [ "${1:-}" != "--force" ] && [ -f "$DEST/READY" ] && [ "$(cat "$DEST/READY")" = "$STAMP" ]; then
  echo "webui: already built in $DEST"
  exit 0
fi
rm -rf "$DEST"
mkdir -p "$DEST"
START=$SECONDS
tar -xzf "$SHARED"/text-generation-webui-*.tar.gz -C "$DEST"
cd "$TREE"
python3.11 -m venv venv
venv/bin/pip install "${PIP[@]}" torch==2.13.0
grep -v '^https://' requirements/full/requirements_cpu_only.txt > req-cpu.txt
venv/bin/pip install "${PIP[@]}" -r req-cpu.txt "$SHARED"/gradio-*.whl "$SHARED"/gradio_client-*.whl
venv/bin/pip freeze > "$DEST/before-extension.txt"
echo "webui: venv built in $((SECONDS - START)) s"

# The extension, as a user installs it (README "Install", steps 1 and 2). The
# tests refresh these files from the working tree before each server start.
bash "$ROOT/scripts/sync_webui_extension.sh"
venv/bin/pip install "${PIP[@]}" -r user_data/extensions/steerswarm/requirements.txt
venv/bin/pip freeze > "$DEST/after-extension.txt"
venv/bin/pip check
echo "webui: extension requirements added $(comm -13 <(sed 's/==.*//' "$DEST/before-extension.txt" | sort) \
  <(sed 's/==.*//' "$DEST/after-extension.txt" | sort) | wc -l) packages"

# The model: the embedded GGUF, dequantised to float32 and saved as a folder.
# transformers refuses to save a model it loaded from GGUF, so the weights go
# into a fresh model built from the same config.
OMP_NUM_THREADS=1 PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" - "$MODEL" <<'EOF'
import sys
import torch
from transformers import AutoModelForCausalLM
from steering.models import load_model
loaded = load_model(device="cpu")
config = loaded.model.config
config.__dict__.pop("quantization_config", None)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
model.load_state_dict(loaded.model.state_dict(), strict=True)
model.save_pretrained(sys.argv[1])
loaded.tokenizer.save_pretrained(sys.argv[1])
EOF
echo "$STAMP" > "$DEST/READY"
echo "webui: built in $((SECONDS - START)) s, $(du -sh "$DEST" | cut -f1)"
