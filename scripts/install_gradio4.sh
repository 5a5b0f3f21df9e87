#!/usr/bin/env bash
# Creates ./.venv-gradio4: stock Gradio 4.37.2 (the API text-generation-webui
# runs, through its own fork) with this project's dependencies, so the tests
# can build and drive the tabs under Gradio 4 as well as under current Gradio.
# Every version is pinned in requirements/gradio4.txt; about 100 s and 1.7 GB.
# Re-running it replaces the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
rm -rf .venv-gradio4
"$PYTHON" -m venv .venv-gradio4
# --no-compile: byte-compiling 120 packages on 2 cores takes longer than
# installing them; Python compiles what the check imports on first use.
.venv-gradio4/bin/pip install -q --disable-pip-version-check --no-compile \
  -r requirements/gradio4.txt
.venv-gradio4/bin/python -c "import gradio; assert gradio.__version__ == '4.37.2', gradio.__version__"
