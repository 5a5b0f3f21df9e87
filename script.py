"""text-generation-webui entry point: everything lives in extension.py.

The webui imports this file as `extensions.<name>.script` (or by file path
for user extensions), so put this folder on sys.path first; then
`extension`, `steering`, `ui` and `optimize` import the same way in both cases.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from extension import *  # noqa: E402,F403
from extension import main, params, setup, ui  # noqa: E402,F401
