"""Print what a `pip install --dry-run --report` would change in an environment.

Usage: python moves.py REPORT.json FREEZE.txt
"""

from __future__ import annotations

import json
import sys


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


def main(report_path: str, freeze_path: str) -> int:
    before = {}
    with open(freeze_path, encoding="utf-8") as handle:
        for line in handle:
            if "==" in line:
                name, version = line.strip().split("==", 1)
                before[_key(name)] = version
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    moved, added = [], []
    for item in report["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if _key(name) in before:
            if before[_key(name)] != version:
                moved.append(f"{name} {before[_key(name)]} -> {version}")
        else:
            added.append(f"{name}=={version}")
    print(f"moves {len(moved)} installed package(s):")
    for line in moved:
        print(f"  {line}")
    print(f"adds {len(added)} package(s): {' '.join(sorted(added, key=str.lower))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
