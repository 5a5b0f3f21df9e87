"""What the webui's Gradio fork changes that stock gradio 4.37.2 needs beside
huggingface-hub 1.x: the `HfFolder` import (removed from the hub in 1.0).

Only for scripts/check_webui_requirements.sh --scenarios, which runs the
webui scenarios with the webui's own library pins; put this folder on
PYTHONPATH and Python imports it at start-up.
"""

import huggingface_hub

if not hasattr(huggingface_hub, "HfFolder"):

    class HfFolder:
        @staticmethod
        def get_token() -> str | None:
            return huggingface_hub.get_token()

    huggingface_hub.HfFolder = HfFolder
