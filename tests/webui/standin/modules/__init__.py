"""A stand-in for text-generation-webui's `modules` package in tests.

Only the parts an extension meets are here, written to behave as the webui's
own do (oobabooga/text-generation-webui, 2026): `shared` holds the loaded
model, its tokenizer, the generation lock and the settings; `extensions`
imports an extension's `script.py` by the webui's two routes, applies the
`<name>-<param>` settings, runs `setup()` and builds the tab around `ui()`;
`ui` writes the extension parameters into the saved settings.

Put `tests/webui/standin` first on sys.path to import it as `modules`.
"""
