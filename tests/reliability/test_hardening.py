"""Hardening of the defaults: what an operator's logs and an anonymous visitor get to see.

Every test runs real ``manage.py`` processes (``LiveServer``), is bounded in time, and prints what it
observed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from realtime.conf.env import DEVELOPMENT_SECRET_KEY
from realtime.testing import ROOT, LiveServer

WAIT = 10.0  # any single HTTP request
COMMAND_TIMEOUT = 60.0  # one manage.py or make subprocess


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` with no secret key in the environment unless ``env`` gives one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_SECRET_KEY", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", **env},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def test_debug_off_with_the_development_secret_key_is_refused(tmp_path: Path) -> None:
    """The built-in key is public and signs sessions and history cursors: with DEBUG off the system
    check realtime.E002 fails ``check`` and keeps ``serve`` from starting."""
    missing = str(tmp_path / "no-such-key-file")
    outcomes = {
        "nothing set": _manage(tmp_path, "check", DJANGO_SECRET_KEY_FILE=missing),
        "the development key set": _manage(tmp_path, "check", DJANGO_SECRET_KEY=DEVELOPMENT_SECRET_KEY),
        "DEBUG=true": _manage(tmp_path, "check", DJANGO_SECRET_KEY_FILE=missing, DEBUG="true"),
        "a real key": _manage(tmp_path, "check", DJANGO_SECRET_KEY=uuid.uuid4().hex * 2),
    }
    for case, result in outcomes.items():
        print(f"check with {case}: exit {result.returncode}, E002: {'realtime.E002' in result.stderr}")
    for refused in ("nothing set", "the development key set"):
        assert outcomes[refused].returncode != 0 and "realtime.E002" in outcomes[refused].stderr
    for accepted in ("DEBUG=true", "a real key"):
        assert outcomes[accepted].returncode == 0, outcomes[accepted].stderr

    server = LiveServer(env={"DJANGO_SECRET_KEY": DEVELOPMENT_SECRET_KEY})
    try:
        with pytest.raises(RuntimeError) as refused:
            server.start()
        print(f"serve exited {server.process.returncode}; its log names realtime.E002")
        assert "realtime.E002" in str(refused.value)
    finally:
        server.stop()


def test_make_run_writes_a_private_key_file_that_the_server_uses(tmp_path: Path) -> None:
    """``make run`` keeps working out of the box, DEBUG off: it writes a random key for the checkout
    (mode 0600, made once) and every ``manage.py`` of the checkout reads it."""
    python = Path(sys.executable)
    if shutil.which("make") is None or not (python.parent / "python").exists():
        pytest.skip("needs make and a virtualenv python")
    key_file = tmp_path / "secret_key"
    make = [
        "make",
        "-s",
        "-C",
        str(ROOT),
        "secret-key",
        f"SECRET_KEY_FILE={key_file}",
        f"BIN={python.parent}",
    ]
    subprocess.run(make, check=True, capture_output=True, timeout=COMMAND_TIMEOUT)
    key = key_file.read_text().strip()
    mode = stat.S_IMODE(key_file.stat().st_mode)
    subprocess.run(make, check=True, capture_output=True, timeout=COMMAND_TIMEOUT)
    kept = key_file.read_text().strip() == key
    print(f"key file: {len(key)} characters, mode {mode:o}, kept by a second make: {kept}")
    assert len(key) >= 50 and key != DEVELOPMENT_SECRET_KEY and mode == 0o600
    assert kept

    assert _manage(tmp_path, "check", DJANGO_SECRET_KEY_FILE=str(key_file)).returncode == 0
    with LiveServer(env={"DJANGO_SECRET_KEY": "", "DJANGO_SECRET_KEY_FILE": str(key_file)}) as srv:
        used = srv.manage(
            "shell", "-v", "0", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"
        )
        assert used.strip() == key


def test_the_default_app_secret_is_not_logged_but_can_be_read_on_purpose() -> None:
    """``serve --prepare`` (and ``make run``) run ``ensure_default_app`` on every start: its output
    lands in logs, so it names the app id and key and where to read the secret, never the secret."""
    secret = f"s3cret-{uuid.uuid4().hex}"
    with LiveServer(app_id="4242", key="hardening-key", secret=secret) as srv:
        log = srv.log()
        line = next(x for x in log.splitlines() if x.startswith("Default app"))
        print(f"start-up log line: {line!r}")
        assert "app_id=4242" in line and "key=hardening-key" in line
        assert "list_apps --show-secrets" in line
        assert secret not in log

        again = srv.manage("ensure_default_app")
        print(f"ensure_default_app again: {again.strip()!r}")
        assert "Default app found" in again and secret not in again

        # Asking for it is still possible; and create_app shows the secret of the app it just made,
        # the one time its operator can see it.
        shown = json.loads(srv.manage("list_apps", "--show-secrets", "--json"))
        assert [a["secret"] for a in shown if a["id"] == "4242"] == [secret]
        created = dict(
            line.split("=", 1)
            for line in srv.manage("create_app", "--name", "new").splitlines()
            if "=" in line
        )
        print(f"create_app printed the fields {sorted(created)}")
        assert len(created["secret"]) >= 16


def test_the_landing_page_lists_app_keys_to_admin_staff_only() -> None:
    """``/`` used to list every app's id and key to anyone. Anonymous visitors now get how to connect
    and a pointer to the admin; staff signed in to the admin get the app table."""
    key = f"landing-{uuid.uuid4().hex[:8]}"
    with (
        LiveServer(app_id="5151", key=key, secret="landing-secret") as srv,
        httpx.Client(base_url=srv.http_url, timeout=WAIT) as browser,
    ):
        anonymous = browser.get("/")
        print(f"anonymous GET /: {anonymous.status_code}, lists the key: {key in anonymous.text}")
        assert anonymous.status_code == 200
        assert key not in anonymous.text and "5151" not in anonymous.text
        assert "/admin/" in anonymous.text and "/app/" in anonymous.text

        srv.env["DJANGO_SUPERUSER_PASSWORD"] = "ops-password-123"
        srv.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com")
        form = browser.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post(
            "/admin/login/",
            data={
                "csrfmiddlewaretoken": token,
                "username": "ops",
                "password": "ops-password-123",
                "next": "/admin/",
            },
        )
        assert signed_in.status_code == 302, signed_in.text[:500]
        staff = browser.get("/")
        print(f"staff GET /: {staff.status_code}, lists the key: {key in staff.text}")
        assert staff.status_code == 200 and key in staff.text and "5151" in staff.text
        assert "landing-secret" not in staff.text
