#!/usr/bin/env bash
# Creates ./.venv-repeng for the GGUF interchange test (tests/e2e/test_gguf_peers.py):
# numpy 1.26 and repeng 0.4.0 (which needs numpy < 2), seeing the rest of ./.venv's
# packages through a .pth file placed after its own. See requirements/repeng.txt. About 10 s.
# Re-running it replaces the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
rm -rf .venv-repeng
"$PYTHON" -m venv .venv-repeng
.venv-repeng/bin/pip install -q --disable-pip-version-check --no-deps -r requirements/repeng.txt
main_site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
own_site="$(.venv-repeng/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# .pth directories go after the environment's own site-packages, so numpy 1.26 wins.
realpath "$main_site" > "$own_site/zz_steerswarm_main_venv.pth"
.venv-repeng/bin/python -c "import numpy, repeng; assert numpy.__version__ == '1.26.4', numpy.__version__"
