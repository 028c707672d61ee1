"""serve keeps the cyclic garbage collector off the hot path (checked in a fresh interpreter, so this
test process keeps Python's defaults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import gc
from realtime.server.node import tune_garbage_collector
tune_garbage_collector({threshold})
print(gc.get_threshold()[0], gc.get_freeze_count() > 0)
"""


def probe(threshold: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(threshold=threshold)],
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "sockudo_project.settings", "PATH": ""},
        cwd=Path(__file__).resolve().parent.parent,
    )
    return result.stdout.strip()


def test_start_up_objects_are_frozen_and_young_collections_are_rare():
    assert probe(50000) == "50000 True"


def test_zero_leaves_python_defaults():
    assert probe(0) == "700 False"
