"""Fail a CI run on skips that are not allowed there.

Under CI=true every test must run. The only accepted skip is a behaviour Wine's Service Control
Manager does not implement: its reason starts with "wine-lacks:" and quotes the feature column of
a row in the shared tools README's Wine table (the row the skip rests on).
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def wine_rows(readme: Path) -> list[str]:
    rows = []
    in_table = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("| feature |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cell = line.strip("|").split("|")[0].strip()
            if cell and not set(cell) <= {"-", " "}:
                rows.append(cell)
    return rows


def main(junit: str, readme: str) -> int:
    if os.environ.get("CI", "").lower() != "true":
        return 0
    rows = wine_rows(Path(readme)) if Path(readme).is_file() else []
    bad = []
    total = skipped = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        total += 1
        skip = case.find("skipped")
        if skip is None:
            continue
        skipped += 1
        reason = skip.get("message", "")
        reason = reason.split(": ", 1)[1] if reason.startswith(("Skipped: ", "skipped: ")) else reason
        ok = reason.startswith("wine-lacks:") and any(row in reason for row in rows)
        if not ok:
            bad.append(f"{case.get('classname')}::{case.get('name')}: {reason}")
    print(f"CI: {total} test cases, {skipped} skipped")
    if bad:
        print("CI: these tests were skipped, which CI does not allow (only 'wine-lacks: <tools README row>'):",
              file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
