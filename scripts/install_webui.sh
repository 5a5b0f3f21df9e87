#!/usr/bin/env bash
# Builds the real text-generation-webui for the tests in tests/e2e/test_real_webui.py
# into ./.webui (ignored by git):
#   1. unpacks the webui tree at commit 1dcde41 from the first source found (below),
#   2. builds its venv as the webui's own CPU install does (torch 2.13.0 CPU, the
#      webui's CPU requirements without the https:// wheels, its Gradio fork),
#   3. installs this extension as our README tells users: the project's files in
#      user_data/extensions/steerswarm and `pip install -r .../requirements.txt`,
#   4. writes SmolLM2-135M-Instruct (from the embedded GGUF) as a float32
#      Transformers folder in user_data/models/SmolLM2-135M-Instruct.
#
# The source: a folder holding text-generation-webui-*.tar.gz (the webui tree) and
# the wheels of its Gradio fork (gradio-*.whl, gradio_client-*.whl). First found wins:
#   - $STEERSWARM_WEBUI_SOURCE, when set (it must be such a folder);
#   - ../shared/webui beside the repository (this project's workspace has one);
#   - the pinned upstream release, downloaded from GitHub into ./.webui-source
#     (the webui's commit and its Gradio fork's release wheels, the URLs below).
# When there is none (no folder and no network to GitHub), it says so, writes the
# reason to .webui/UNAVAILABLE and exits 0: the real-webui tests skip with that
# reason. A source that is found but fails to build is an error (exit 1).
#
# Skips everything when .webui/READY names the same inputs (the tarball, the
# wheels and our requirements files); otherwise rebuilds from scratch.
# Needs ./.venv (scripts/install.sh) for step 4.
# Usage: scripts/install_webui.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEST="$ROOT/.webui"
TREE="$DEST/text-generation-webui"
MODEL="$TREE/user_data/models/SmolLM2-135M-Instruct"
PIP=(--disable-pip-version-check -q --no-compile)

WEBUI_COMMIT=1dcde41d03d13fc768316f4d2256a8a6dd044268
WEBUI_URL="https://github.com/oobabooga/text-generation-webui/archive/$WEBUI_COMMIT.tar.gz"
FORK_URL="https://github.com/oobabooga/gradio/releases/download/4.37.2-custom.20"
FORK_WHEELS=(gradio-4.37.2+custom.20-py3-none-any.whl gradio_client-1.0.2+custom.20-py3-none-any.whl)
DOWNLOADED="$ROOT/.webui-source"

has_source() {  # a folder with the webui tarball and both wheels of the Gradio fork
  compgen -G "$1/text-generation-webui-*.tar.gz" >/dev/null \
    && compgen -G "$1/gradio-*.whl" >/dev/null && compgen -G "$1/gradio_client-*.whl" >/dev/null
}

unavailable() {  # no source: record why, so the tests can say it when they skip
  rm -rf "$DEST"
  mkdir -p "$DEST"
  printf '%s\n' "$1" > "$DEST/UNAVAILABLE"
  echo "webui: not built: $1" >&2
  exit 0
}

download() {  # the pinned upstream release into $DOWNLOADED; fails when GitHub is unreachable
  local part="$DOWNLOADED.part"
  rm -rf "$part"
  mkdir -p "$part"
  if ! python3 - "$part" "$WEBUI_URL" "text-generation-webui-1dcde41.tar.gz" \
    "${FORK_WHEELS[@]/#/$FORK_URL/}" <<'EOF'
import shutil
import sys
import urllib.request
from pathlib import Path

folder, webui_url, webui_name, *wheel_urls = sys.argv[1:]
for url, name in [(webui_url, webui_name)] + [(u, u.rsplit("/", 1)[1]) for u in wheel_urls]:
    with urllib.request.urlopen(url, timeout=60) as reply, open(Path(folder) / name, "wb") as out:
        shutil.copyfileobj(reply, out)
    print(f"webui: downloaded {url}")
EOF
  then
    rm -rf "$part"
    return 1
  fi
  rm -rf "$DOWNLOADED"
  mv "$part" "$DOWNLOADED"
}

if [ -n "${STEERSWARM_WEBUI_SOURCE:-}" ]; then
  has_source "$STEERSWARM_WEBUI_SOURCE" || {
    echo "webui: STEERSWARM_WEBUI_SOURCE=$STEERSWARM_WEBUI_SOURCE has no" \
      "text-generation-webui-*.tar.gz with gradio-*.whl and gradio_client-*.whl" >&2
    exit 1
  }
  SOURCE="$(cd "$STEERSWARM_WEBUI_SOURCE" && pwd)"
elif has_source ../shared/webui; then
  SOURCE="$(cd ../shared/webui && pwd)"
elif has_source "$DOWNLOADED"; then
  SOURCE="$DOWNLOADED"
else
  echo "webui: no ../shared/webui and no STEERSWARM_WEBUI_SOURCE: downloading commit" \
    "${WEBUI_COMMIT:0:7} and its Gradio fork from GitHub"
  if ! output="$(download 2>&1)"; then
    unavailable "no source for the real text-generation-webui: no ../shared/webui beside \
the repository, STEERSWARM_WEBUI_SOURCE not set, and the download of the pinned release \
from GitHub failed ($(printf '%s' "$output" | tail -n 1)). Set STEERSWARM_WEBUI_SOURCE to a \
folder with text-generation-webui-*.tar.gz, gradio-*.whl and gradio_client-*.whl, then run \
scripts/install_webui.sh."
  fi
  printf '%s\n' "$output"
  SOURCE="$DOWNLOADED"
fi
echo "webui: source $SOURCE"

STAMP="$( (cd "$SOURCE" && sha256sum text-generation-webui-*.tar.gz gradio*.whl) ;
          sha256sum requirements.txt requirements/webui.txt scripts/install_webui.sh)"
if [ "${1:-}" != "--force" ] && [ -f "$DEST/READY" ] && [ "$(cat "$DEST/READY")" = "$STAMP" ]; then
  echo "webui: already built in $DEST"
  exit 0
fi
rm -rf "$DEST"
mkdir -p "$DEST/unpack"
START=$SECONDS
# The shared tarball holds text-generation-webui/, GitHub's text-generation-webui-<commit>/.
tar -xzf "$SOURCE"/text-generation-webui-*.tar.gz -C "$DEST/unpack"
mv "$DEST"/unpack/* "$TREE"
rmdir "$DEST/unpack"
cd "$TREE"
python3.11 -m venv venv
venv/bin/pip install "${PIP[@]}" torch==2.13.0
grep -v '^https://' requirements/full/requirements_cpu_only.txt > req-cpu.txt
venv/bin/pip install "${PIP[@]}" -r req-cpu.txt "$SOURCE"/gradio-*.whl "$SOURCE"/gradio_client-*.whl
venv/bin/pip freeze > "$DEST/before-extension.txt"
echo "webui: venv built in $((SECONDS - START)) s"

# The extension, as a user installs it (docs/webui.md, "Install"). The
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
