"""The README's settings table must list every server setting with the default the code uses."""

import re
from pathlib import Path

from realtime.conf import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|", README, re.M))
    for setting in SETTINGS:
        assert setting.env in rows, f"{setting.env} missing from the README settings table"
        assert rows[setting.env] == str(setting.default), (
            f"{setting.env}: README {rows[setting.env]!r} != {setting.default!r}"
        )


def test_readme_gives_the_two_commands():
    assert "make run" in README and "make test" in README
