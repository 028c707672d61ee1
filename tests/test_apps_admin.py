"""App administration: management commands, the static driver, system checks and the Django admin.

Django never runs in the test process: every command is a ``manage.py`` subprocess against a
temporary SQLite database (``DATABASE_URL``), and servers are real ``LiveServer`` processes, so no
global Django state leaks into other test modules. All tests are synchronous; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime.testing import ROOT, LiveServer, PusherClient, signed_query

WAIT = 5.0  # any single network wait
COMMAND_TIMEOUT = 60.0  # one manage.py subprocess (Django start-up included)
TEST_BUDGET = 30.0  # one async test body

# Variables of the test process that would change which apps a subprocess sees.
_SCRUBBED_PREFIXES = ("SOCKUDO_DEFAULT_APP_", "SOCKUDO_APPS", "APP_MANAGER_", "DATABASE_URL", "CLIENT_EVENT_")


# --------------------------------------------------------------------------- helpers


def manage(
    env: dict[str, str], *args: str, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess:
    """Run ``manage.py`` with ``env`` (plus ``extra_env``); fail with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Project:
    """``manage.py`` against a fresh SQLite database in ``tmp_path`` (no server)."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        self.env = {
            **base,
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
            "APP_MANAGER_DRIVER": "database",
            "PYTHONUNBUFFERED": "1",
            **env,
        }

    def __call__(self, *args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
        return manage(self.env, *args, check=check, **extra_env)

    def migrate(self) -> Project:
        self("migrate", "--no-input", "-v", "0")
        return self

    def apps(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self("list_apps", "--json", "--show-secrets").stdout)
        return {row["id"]: row for row in rows}

    def field(self, app_id: str, field: str) -> Any:
        code = (
            "import json; from apps_admin.models import App; "
            f"print(json.dumps(getattr(App.objects.get(id={app_id!r}), {field!r})))"
        )
        return json.loads(self("shell", "-v", "0", "-c", code).stdout)


def create_app(env: dict[str, str], *args: str) -> dict[str, str]:
    return json.loads(manage(env, "create_app", "--json", *args).stdout)


def api(
    live: LiveServer,
    method: str,
    path: str,
    key: str,
    secret: str,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    raw = b"" if body is None else json.dumps(body).encode()
    query = signed_query(method, path, key, secret, raw, params)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return httpx.request(
        method, f"{live.http_url}{path}?{query}", content=raw or None, headers=headers, timeout=WAIT
    )


def channels_status(live: LiveServer, app_id: str, key: str, secret: str) -> int:
    return api(live, "GET", f"/apps/{app_id}/channels", key, secret).status_code


def ws_url(live: LiveServer, key: str) -> str:
    return f"ws://{live.host}:{live.port}/app/{key}?protocol=7&client=test&version=1&flash=false"


def run(coro) -> Any:
    async def guarded():
        return await asyncio.wait_for(coro, TEST_BUDGET)

    return asyncio.run(guarded())


async def subscribed(live: LiveServer, key: str, channel: str) -> PusherClient:
    client = await PusherClient.connect(ws_url(live, key))
    await client.subscribe(channel)
    await client.expect("pusher_internal:subscription_succeeded", channel, timeout=WAIT)
    return client


def roundtrip(live: LiveServer, app_id: str, key: str, secret: str) -> None:
    """A socket with ``key`` receives an event published over HTTP with ``secret``."""
    channel = f"admin-{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        client = await subscribed(live, key, channel)
        try:
            assert client.established["socket_id"]
            event = {"name": "greet", "channels": [channel], "data": json.dumps({"hi": app_id})}
            response = await asyncio.to_thread(
                api, live, "POST", f"/apps/{app_id}/events", key, secret, event
            )
            assert response.status_code == 200, response.text
            frame = await client.expect("greet", channel, timeout=WAIT)
            assert json.loads(frame["data"]) == {"hi": app_id}
        finally:
            await client.close()

    run(body())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def db_server() -> Iterator[LiveServer]:
    """Apps from the database; lookups not cached, so rows written by other processes apply at once."""
    with LiveServer(database=True, env={"APP_MANAGER_CACHE_TTL": "0"}) as live:
        yield live


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


# --------------------------------------------------------------------------- create_app


def test_create_app_serves_websocket_and_http_api(db_server: LiveServer) -> None:
    creds = create_app(
        db_server.env, "--name", "Second app", "--enable-client-messages", "--max-connections", "50"
    )
    assert creds["app_id"].isdigit() and int(creds["app_id"]) > 1001
    assert re.fullmatch(r"[0-9a-f]{20}", creds["key"]) and re.fullmatch(r"[0-9a-f]{32}", creds["secret"])
    roundtrip(db_server, creds["app_id"], creds["key"], creds["secret"])
    # Its secret signs only for its own id; the default app is unaffected.
    assert channels_status(db_server, "1001", creds["key"], creds["secret"]) == 401
    roundtrip(db_server, "1001", "app-key", "app-secret")


def test_create_app_text_output_explicit_credentials_and_conflicts(project: Project) -> None:
    project.migrate()
    out = project(
        "create_app",
        "--id",
        "42",
        "--key",
        "k42",
        "--secret",
        "s42",
        "--allowed-origins",
        "https://a.example, https://b.example",
        "--set",
        "max_event_batch_size=3",
        "--set",
        'webhooks=[{"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"]}]',
    ).stdout
    assert key_values(out) == {"app_id": "42", "key": "k42", "secret": "s42"}
    assert project.field("42", "allowed_origins") == ["https://a.example", "https://b.example"]
    assert project.field("42", "max_event_batch_size") == 3
    assert project.field("42", "webhooks")[0]["url"] == "http://127.0.0.1:9/hook"
    # The next generated id follows the largest numeric one.
    assert create_app(project.env)["app_id"] == "43"
    for args, message in (
        (("--id", "42"), "already exists"),
        (("--key", "k42"), "already exists"),
        (("--set", "nonsense=1"), "unknown field"),
        (("--set", "max_connections=-1"), "max_connections"),
        (("--webhooks", "{not json"), "webhooks"),
    ):
        result = project("create_app", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert sorted(project.apps()) == ["42", "43"]


# --------------------------------------------------------------------------- rotate_secret


def test_rotate_secret_grace_period(db_server: LiveServer) -> None:
    creds = create_app(db_server.env, "--name", "rotating")
    app_id, key, first = creds["app_id"], creds["key"], creds["secret"]
    assert channels_status(db_server, app_id, key, first) == 200

    rotated = json.loads(manage(db_server.env, "rotate_secret", app_id, "--json").stdout)
    second = rotated["secret"]
    assert second != first and rotated["previous_secret_valid_until"]
    assert channels_status(db_server, app_id, key, first) == 200  # previous secret, within grace
    assert channels_status(db_server, app_id, key, second) == 200
    assert channels_status(db_server, app_id, key, "not-the-secret") == 401
    roundtrip(db_server, app_id, key, first)

    out = manage(db_server.env, "rotate_secret", app_id, "--grace-seconds", "0").stdout
    third = key_values(out)["secret"]
    assert "previous secret revoked" in out
    assert channels_status(db_server, app_id, key, second) == 401
    assert channels_status(db_server, app_id, key, first) == 401
    assert channels_status(db_server, app_id, key, third) == 200


def test_rotate_secret_previous_expires_after_grace(db_server: LiveServer) -> None:
    creds = create_app(db_server.env)
    app_id, key, old = creds["app_id"], creds["key"], creds["secret"]
    new = key_values(manage(db_server.env, "rotate_secret", app_id, "--grace-seconds", "1").stdout)["secret"]
    assert channels_status(db_server, app_id, key, new) == 200
    deadline = time.monotonic() + 4  # the grace is 1 s; allow for a slow subprocess start
    while channels_status(db_server, app_id, key, old) == 200:
        assert time.monotonic() < deadline, "previous secret still accepted after its grace period"
        time.sleep(0.2)
    assert channels_status(db_server, app_id, key, old) == 401
    assert channels_status(db_server, app_id, key, new) == 200


def test_rotate_secret_errors(project: Project) -> None:
    project.migrate()
    assert "No app" in project("rotate_secret", "999", check=False).stderr
    app_id = create_app(project.env, "--secret", "same")["app_id"]
    assert "negative" in project("rotate_secret", app_id, "--grace-seconds", "-1", check=False).stderr
    assert "equals" in project("rotate_secret", app_id, "--secret", "same", check=False).stderr
    project("rotate_secret", app_id, "--secret", "chosen")
    assert project.apps()[app_id]["secret"] == "chosen"
    assert project.field(app_id, "previous_secret") == "same"


# --------------------------------------------------------------------------- sign_request


def _curl(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "curl"
    result = subprocess.run(
        [*argv, "--max-time", str(WAIT), "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=WAIT + 5,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sign_request_prints_working_curl(db_server: LiveServer) -> None:
    creds = create_app(db_server.env)
    app_id, key = creds["app_id"], creds["key"]
    channel = f"signed-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": "from-curl", "channels": [channel], "data": '{"n":1}'})

    async def scenario() -> tuple[str, str, str, str]:
        client = await subscribed(db_server, key, channel)
        try:
            post = manage(
                db_server.env, "sign_request", "--app-id", app_id, "POST", "events", "--body", body
            ).stdout.strip()
            posted = await asyncio.to_thread(_curl, post)
            frame = await client.expect("from-curl", channel, timeout=WAIT)
            assert frame["data"] == '{"n":1}'
            get = manage(
                db_server.env,
                "sign_request",
                "--app-id",
                app_id,
                "get",
                f"/apps/{app_id}/channels?filter_by_prefix=signed-",
                "--param",
                "info=subscription_count",
                "--url",
                db_server.http_url,
            ).stdout.strip()
            listed = await asyncio.to_thread(_curl, get)
            return post, posted, get, listed
        finally:
            await client.close()

    post, posted, get, listed = run(scenario())
    assert post.startswith("curl ") and f"{db_server.http_url}/apps/{app_id}/events?" in post  # $PORT default
    assert posted.splitlines()[-1] == "200", posted
    assert listed.splitlines()[-1] == "200", listed
    assert channel in json.loads(listed.splitlines()[0])["channels"]
    assert "-X" not in shlex.split(get)

    bad = manage(db_server.env, "sign_request", "--app-id", "nope", "GET", "channels", check=False)
    assert bad.returncode != 0 and "No app" in bad.stderr
    bad = manage(
        db_server.env, "sign_request", "--app-id", app_id, "GET", "channels", "--body", "{}", check=False
    )
    assert bad.returncode != 0 and "POST" in bad.stderr


def test_sign_request_body_from_file_and_fixed_timestamp(db_server: LiveServer, tmp_path: Path) -> None:
    creds = create_app(db_server.env)
    body_file = tmp_path / "body.json"
    body_file.write_bytes(b'{"name":"e","channels":["file-body"],"data":"x"}')
    command = manage(
        db_server.env,
        "sign_request",
        "--app-id",
        creds["app_id"],
        "POST",
        "events",
        "--body",
        f"@{body_file}",
    ).stdout.strip()
    assert _curl(command).splitlines()[-1] == "200"
    # A fixed timestamp reproduces the signature of realtime.testing.signed_query.
    stamp = str(int(time.time()))
    fixed = manage(
        db_server.env, "sign_request", "--app-id", creds["app_id"], "GET", "channels", "--timestamp", stamp
    ).stdout
    expected = signed_query(
        "GET", f"/apps/{creds['app_id']}/channels", creds["key"], creds["secret"], timestamp=int(stamp)
    )
    assert expected in fixed


# --------------------------------------------------------------------------- static driver


FLAT_APP = {
    "id": "2001",
    "key": "flat-key",
    "secret": "flat-secret",
    "name": "Flat",
    "enable_client_messages": True,
    "max_connections": "100",
    "allowed_origins": [],
}
POLICY_APP = {
    "id": "2002",
    "key": "policy-key",
    "secret": "policy-secret",
    "enabled": True,
    "policy": {
        "limits": {"max_connections": 100, "max_client_events_per_second": 0},
        "features": {"enable_client_messages": True},
        "channels": {"allowed_origins": ["*"]},
        "history": {"enabled": False},
    },
}


def test_static_driver_serves_flat_and_policy_apps() -> None:
    with LiveServer(database=False, env={"SOCKUDO_APPS": json.dumps([FLAT_APP, POLICY_APP])}) as live:
        for app in (FLAT_APP, POLICY_APP):
            roundtrip(live, app["id"], app["key"], app["secret"])
        roundtrip(live, "1001", "app-key", "app-secret")  # SOCKUDO_DEFAULT_APP_ID is set too
        assert channels_status(live, "2001", "policy-key", "policy-secret") == 401  # key of another app
        assert channels_status(live, "2002", "policy-key", "flat-secret") == 401

        listed = {row["id"]: row for row in json.loads(manage(live.env, "list_apps", "--json").stdout)}
        assert sorted(listed) == ["1001", "2001", "2002"]
        assert listed["2002"]["enable_client_messages"] is True and listed["2002"]["max_connections"] == 100
        assert "secret" not in listed["2001"]

        # sign_request works without a database: the app comes from the static manager.
        command = manage(live.env, "sign_request", "--app-id", "2002", "GET", "channels").stdout.strip()
        assert _curl(command).splitlines()[-1] == "200"

        # The policy app is flagged by the system checks (wildcard origin, unlimited client events).
        checked = manage(live.env, "check")
        assert "app 2002: (apps_admin.W001)" in checked.stderr
        assert "app 2002: (apps_admin.W002)" in checked.stderr
        assert "app 2001" not in checked.stderr


# --------------------------------------------------------------------------- ensure_default_app


def test_ensure_default_app_is_idempotent_and_applies_explicit_env(project: Project) -> None:
    project.migrate()
    created = project("ensure_default_app").stdout
    assert "Default app created: app_id=1001 key=app-key" in created
    assert "app-secret" not in created
    assert "Default app found" in project("ensure_default_app").stdout
    assert list(project.apps()) == ["1001"]

    # An edit made in the admin survives a restart without matching variables...
    project(
        "shell",
        "-v",
        "0",
        "-c",
        "from apps_admin.models import App; App.objects.filter(id='1001').update(name='Edited', max_connections=7)",
    )
    project("ensure_default_app")
    apps = project.apps()
    assert list(apps) == ["1001"]
    assert apps["1001"]["name"] == "Edited" and apps["1001"]["max_connections"] == 7

    # ...while the variables that are set win.
    project(
        "ensure_default_app",
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS="50",
        SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES="true",
        SOCKUDO_DEFAULT_APP_SECRET="new-secret",
        SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS="https://x.example",
    )
    app = project.apps()["1001"]
    assert (app["name"], app["max_connections"], app["enable_client_messages"], app["secret"]) == (
        "Edited",
        50,
        True,
        "new-secret",
    )
    assert project.field("1001", "allowed_origins") == ["https://x.example"]
    assert list(project.apps()) == ["1001"]


# --------------------------------------------------------------------------- system checks


def test_checks_do_not_crash_without_migrations(project: Project) -> None:
    result = project("check")
    assert "no issues" in result.stdout


def test_checks_warn_about_dangerous_apps(project: Project) -> None:
    project.migrate()
    created = project(
        "create_app",
        "--id",
        "7",
        "--enable-client-messages",
        "--allowed-origins",
        "*",
        "--max-client-events-per-second",
        "0",
    )
    assert "Warning:" in created.stderr  # create_app reports the same problems at once
    create_app(
        project.env, "--id", "8", "--enable-client-messages", "--allowed-origins", "https://ok.example"
    )
    create_app(project.env, "--id", "9", "--allowed-origins", "*")  # no client events: fine

    result = project("check")
    assert result.returncode == 0
    assert "app 7: (apps_admin.W001)" in result.stderr
    assert "app 7: (apps_admin.W002)" in result.stderr
    assert "app 8" not in result.stderr and "app 9" not in result.stderr

    # An app without its own limit inherits the server default; 0 there means no limit either.
    result = project("check", CLIENT_EVENT_MAX_PER_SECOND="0")
    assert "app 8: (apps_admin.W002)" in result.stderr and "server default" in result.stderr


def test_checks_reject_unknown_driver_and_bad_static_apps(project: Project) -> None:
    result = project("check", check=False, APP_MANAGER_DRIVER="nosuchdriver")
    assert result.returncode != 0 and "apps_admin.E001" in result.stderr
    result = project("check", check=False, APP_MANAGER_DRIVER="apps_admin.managers.static.StaticAppManager")
    assert result.returncode == 0, result.stderr
    result = project("check", check=False, APP_MANAGER_DRIVER="static", SOCKUDO_APPS="[not json")
    assert result.returncode != 0 and "apps_admin.E002" in result.stderr


# --------------------------------------------------------------------------- Django admin

ADMIN_PASSWORD = "correct-horse-battery"  # noqa: S105 - a throwaway test account


def _csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _admin_action(http: httpx.Client, action: str, *app_ids: str) -> httpx.Response:
    page = http.get("/admin/apps_admin/app/")
    data = {
        "action": action,
        "_selected_action": list(app_ids),
        "index": "0",
        "csrfmiddlewaretoken": _csrf(page.text),
    }
    response = http.post("/admin/apps_admin/app/", data=data)
    assert response.status_code == 302, response.text[:2000]
    return response


def test_admin_changelist_and_actions_invalidate_the_cache() -> None:
    # A five-minute cache: the server sees admin edits at once only because saving invalidates it.
    with LiveServer(database=True, env={"APP_MANAGER_CACHE_TTL": "300"}) as live:
        manage(
            live.env,
            "createsuperuser",
            "--no-input",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
            DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        )
        with httpx.Client(base_url=live.http_url, timeout=WAIT) as http:
            login = http.get("/admin/login/")
            response = http.post(
                "/admin/login/?next=/admin/",
                data={
                    "username": "admin",
                    "password": ADMIN_PASSWORD,
                    "csrfmiddlewaretoken": _csrf(login.text),
                },
            )
            assert response.status_code == 302, response.text[:2000]

            changelist = http.get("/admin/apps_admin/app/")
            assert changelist.status_code == 200
            for text in ("1001", "Demo app", "app-key", "Rotate secret", "Disable selected apps"):
                assert text in changelist.text
            assert "app-key" in http.get("/admin/apps_admin/app/", params={"q": "app-key"}).text
            assert "app-key" not in http.get("/admin/apps_admin/app/", params={"q": "nothing-like-it"}).text
            assert "app-key" not in http.get("/admin/apps_admin/app/", params={"enabled__exact": "0"}).text

            change = http.get("/admin/apps_admin/app/1001/change/")
            assert change.status_code == 200
            for title in (
                "Credentials",
                "Limits",
                "Features",
                "Channels &amp; webhooks",
                "Protocol V2 policies",
            ):
                assert title in change.text
            assert "app-secret" in change.text and 'name="secret"' not in change.text  # shown, read-only
            add = http.get("/admin/apps_admin/app/add/")
            assert add.status_code == 200 and 'value="1002"' in add.text and 'name="secret"' in add.text

            assert channels_status(live, "1001", "app-key", "app-secret") == 200  # now cached

            _admin_action(http, "rotate_secret", "1001")
            new = manage(live.env, "list_apps", "--json", "--show-secrets").stdout
            new_secret = json.loads(new)[0]["secret"]
            assert new_secret != "app-secret"
            assert channels_status(live, "1001", "app-key", new_secret) == 200
            assert channels_status(live, "1001", "app-key", "app-secret") == 200  # grace period
            assert "still accepted until" in http.get("/admin/apps_admin/app/1001/change/").text

            _admin_action(http, "disable_apps", "1001")
            assert channels_status(live, "1001", "app-key", new_secret) == 403
            _admin_action(http, "enable_apps", "1001")
            assert channels_status(live, "1001", "app-key", new_secret) == 200
            roundtrip(live, "1001", "app-key", new_secret)


ADMIN_FORM_SCRIPT = """
import json
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment
from apps_admin.models import App

setup_test_environment()  # lets the test client see the response context
User.objects.create_superuser("admin", "admin@example.com", "pw")
client = Client()
client.force_login(User.objects.get(username="admin"))
url = "/admin/apps_admin/app/1001/change/"
form = client.get(url).context["adminform"].form
data = {}
for name in form.fields:
    value = form[name].value()
    if isinstance(value, bool):
        if value:
            data[name] = "on"
    else:
        data[name] = "" if value is None else value
out = {}
bad = client.post(url, {**data, "webhooks": '{"not": "a list"}'})
out["bad_status"] = bad.status_code
out["bad_errors"] = sorted(bad.context["adminform"].form.errors)
good = client.post(url, {**data, "max_connections": "9", "allowed_origins": "", "enable_client_messages": "on"})
out["good_status"] = good.status_code
app = App.objects.get(id="1001")
out["saved"] = [app.max_connections, app.allowed_origins, app.enable_client_messages, app.secret]
add = client.get("/admin/apps_admin/app/add/").context["adminform"].form
out["add_initial"] = [add["id"].value(), len(add["secret"].value())]
print(json.dumps(out))
"""


def test_admin_change_form_saves_and_validates(project: Project) -> None:
    project.migrate()
    project("ensure_default_app")
    out = json.loads(project("shell", "-v", "0", "-c", ADMIN_FORM_SCRIPT).stdout)
    assert out["bad_status"] == 200 and out["bad_errors"] == ["webhooks"]
    assert out["good_status"] == 302
    # An emptied JSON list goes back to its default; the read-only secret is untouched.
    assert out["saved"] == [9, [], True, "app-secret"]
    assert out["add_initial"] == ["1002", 32]


FIELD_GROUPS_PROBE = """
import json
import django
django.setup()
from django.db import models
from apps_admin import fields
from apps_admin.admin import AppAdmin
from apps_admin.models import App

kinds = {models.BooleanField: "bool", models.PositiveIntegerField: "int", models.JSONField: "json",
         models.CharField: "str"}
model = {}
for f in App._meta.concrete_fields:
    if f.name in ("previous_secret", "previous_secret_expires_at", "created_at", "updated_at"):
        continue
    kind = kinds[type(f)]
    if f.name == "allowed_origins":
        kind = "list"
    model[f.name] = kind
groups = {"bool": fields.BOOL_FIELDS, "int": fields.INT_FIELDS, "json": fields.JSON_FIELDS,
          "str": fields.STR_FIELDS, "list": fields.LIST_FIELDS}
declared = {name: kind for kind, names in groups.items() for name in names}
shown = [name for _title, options in AppAdmin.fieldsets for entry in options["fields"]
         for name in (entry if isinstance(entry, tuple) else (entry,))]
app = App(id="1", max_event_payload_in_kb=None, max_channel_name_length=7)
print(json.dumps({
    "model": model, "declared": declared, "total": len(fields.ALL_FIELDS),
    "unique": len(set(fields.ALL_FIELDS)), "shown": shown,
    "effective": [app.effective_max_http_payload_bytes, app.effective_max_channel_name_length,
                  app.effective_decay_seconds],
}))
"""


def test_the_field_groups_cover_the_model_exactly_and_feed_the_admin() -> None:
    from tests.test_api_handler import probe

    result = probe(FIELD_GROUPS_PROBE)
    assert result["declared"] == result["model"]
    assert result["total"] == result["unique"]
    for name in result["model"]:
        assert name in result["shown"], f"{name} is not in the admin's fieldsets"
    # A limit left empty reads the server default (100 KiB), one set reads the app's own value.
    assert result["effective"] == [100 * 1024, 7, 1]
