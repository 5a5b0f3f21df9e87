#!/usr/bin/env bash
# Shows what installing this extension's requirements does to an environment
# like text-generation-webui's: builds one from tests/webui/webui-pins.txt
# (about 2 minutes), then runs the webui's own install command for extension
# requirements (`pip install -r requirements.txt --upgrade`) as a dry run and
# for real, and prints what moved and whether `pip check` stays clean.
# With --scenarios it then runs the webui scenarios (tests/webui/scenarios.py)
# in that environment: the webui's transformers, numpy, huggingface-hub,
# safetensors, accelerate, peft and pydantic, with stock gradio 4.37.2 and a
# shim for the one import the webui's fork fixes (tests/webui/fork_shim).
# served_page_works is left out: stock gradio_client 1.0.2 cannot read the
# API schema pydantic 2.11 writes, which the fork fixes too.
# Usage: scripts/check_webui_requirements.sh [--scenarios] [VENV_DIR]
#        (default VENV_DIR: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SCENARIOS=0
if [ "${1:-}" = "--scenarios" ]; then SCENARIOS=1; shift; fi
VENV="${1:-$(mktemp -d)/webui-env}"
PIP=(--disable-pip-version-check -q --no-compile)
python3 -m venv "$VENV"
"$VENV/bin/pip" install "${PIP[@]}" -r tests/webui/webui-pins.txt
"$VENV/bin/pip" freeze > "$VENV/before.txt"
echo "== webui-like environment: $(grep -iE '^(transformers|numpy|huggingface.hub|datasets|gradio)==' "$VENV/before.txt" | tr '\n' ' ')"
cd /  # as the webui does: the path names the extension's folder
"$VENV/bin/pip" install "${PIP[@]}" --dry-run --upgrade --report "$VENV/report.json" \
  -r "$ROOT/requirements.txt"
"$VENV/bin/python" "$ROOT/tests/webui/moves.py" "$VENV/report.json" "$VENV/before.txt"
"$VENV/bin/pip" install "${PIP[@]}" --upgrade -r "$ROOT/requirements.txt"
"$VENV/bin/pip" check
echo "== after: $("$VENV/bin/pip" freeze | grep -iE '^(transformers|numpy|huggingface.hub|datasets|safetensors|accelerate)==' | tr '\n' ' ')"
if [ "$SCENARIOS" = 1 ]; then
  cd "$ROOT"
  "$VENV/bin/pip" install "${PIP[@]}" gguf==0.19.0  # to read the embedded model's tokenizer
  MODEL="$(.venv/bin/python -c 'from steering.models import embedded_model_folder as f; print(f())')"
  NAMES="$(PYTHONPATH=tests/webui/fork_shim "$VENV/bin/python" -c 'import sys; sys.path.insert(0, "tests/webui"); import scenarios; print(" ".join(n for n in scenarios.ALL if n != "served_page_works"))')"
  # shellcheck disable=SC2086
  PYTHONPATH=tests/webui/fork_shim "$VENV/bin/python" tests/webui/gradio4_check.py "$MODEL" $NAMES
fi
