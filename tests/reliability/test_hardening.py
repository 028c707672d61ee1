"""Hardening of the defaults: what an operator's logs and an anonymous visitor get to see.

Every test runs real ``manage.py`` processes (``LiveServer``), is bounded in time, and prints what it
observed.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx

from realtime.testing import LiveServer

WAIT = 10.0  # any single HTTP request


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
