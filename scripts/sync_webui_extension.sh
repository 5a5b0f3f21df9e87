#!/usr/bin/env bash
# Puts this project's files into the test webui's extension folder
# (.webui/text-generation-webui/user_data/extensions/steerswarm), as a user's
# `git clone` would: the tracked and not-ignored files of the working tree, so
# the tests run the code being worked on. Replaces what was there.
set -euo pipefail
cd "$(dirname "$0")/.."
EXT=".webui/text-generation-webui/user_data/extensions/steerswarm"
rm -rf "$EXT"
mkdir -p "$EXT"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$EXT"
