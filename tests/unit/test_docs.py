"""The README's generated parts stay true."""

import re
from pathlib import Path

from servicehost.config import settings_table
from servicehost.errors import ExitCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_readme_settings_table_is_the_generated_one():
    block = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- end settings-table -->", README, re.S)
    assert block is not None
    assert block.group(1).strip() == settings_table().strip()


def test_readme_lists_every_exit_code():
    for code in ExitCode:
        assert f"| {code.value} | {code.name} |" in README


def test_readme_has_the_two_commands_and_they_exist():
    root = Path(__file__).resolve().parents[2]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in README
        assert (root / script).is_file()
