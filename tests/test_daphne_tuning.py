"""Twisted's access line is built only when daphne's verbosity sends Twisted's log somewhere
(checked in a fresh interpreter with Django set up, so this process stays Django-free)."""

from __future__ import annotations

from tests.test_api_handler import probe

LOG_PROBE = """
import json
import django
django.setup()
from realtime.server.tuning import SniffingHTTPFactory

class Server:
    verbosity = 0

class Sink:
    lines = []
    def write(self, line):
        self.lines.append(line)

formatted = []
for verbosity in (0, 1, 2):
    Server.verbosity = verbosity
    factory = SniffingHTTPFactory(Server())
    factory._logFile = Sink()
    factory._logFormatter = lambda timestamp, request: formatted.append(verbosity) or f"line {verbosity}"
    factory.log(object())
print(json.dumps(dict(formatted=formatted, lines=Sink.lines)))
"""


def test_the_access_line_is_formatted_only_when_it_is_logged():
    result = probe(LOG_PROBE)
    assert result["formatted"] == [2]
    assert result["lines"] == ["line 2\n"]
