#!/usr/bin/env bash
# Shows what installing this extension's requirements does to an environment
# like text-generation-webui's: builds one from tests/webui/webui-pins.txt
# (about 2 minutes), then runs the webui's own install command for extension
# requirements (`pip install -r requirements.txt --upgrade`) as a dry run and
# for real, and prints what moved and whether `pip check` stays clean.
# Usage: scripts/check_webui_requirements.sh [VENV_DIR]  (default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
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
