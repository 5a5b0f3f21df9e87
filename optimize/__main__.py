"""`python -m optimize --help`"""

import os

# Before anything imports tqdm (it reads these once): lm-eval's and the model
# loader's progress bars would bury ours, which asks for itself explicitly.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from optimize.cli import main

raise SystemExit(main())
