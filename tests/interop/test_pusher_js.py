"""pusher-js (npm, Node build) interoperability tests.

Each test runs ``node tests/interop/js/scenarios.js <scenario> ...`` against the live server from the
``server`` fixture (tests/conftest.py) and asserts on the single JSON line the script prints.
The scenarios use real pusher-js 8.4.0 clients (WebSocket transport only) and the Node ``pusher``
server SDK for channel/user auth signatures and for publishing over the HTTP API.

Requires ``node`` and ``npm`` on PATH; ``node_modules`` is installed with ``npm ci`` on first use.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

JS_DIR = Path(__file__).resolve().parent / "js"
SCENARIOS_JS = JS_DIR / "scenarios.js"
SOCKET_ID_RE = re.compile(r"^\d+\.\d+$")

# scenarios.js stops itself after ~15 s; this is only a safety net.
SUBPROCESS_TIMEOUT = 45


@pytest.fixture(scope="session")
def pusher_js_env() -> dict:
    """Make sure node is available and tests/interop/js/node_modules is installed (npm ci)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the pusher-js interop tests (not found on PATH)")

    lock_path = Path(tempfile.gettempdir()) / "realtime-interop-pusher-js-npm.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = all(
            (JS_DIR / "node_modules" / pkg / "package.json").is_file() for pkg in ("pusher-js", "pusher")
        )
        if not installed:
            cmd = [npm, "ci"] if (JS_DIR / "package-lock.json").is_file() else [npm, "install"]
            cmd += ["--no-audit", "--no-fund"]
            proc = subprocess.run(
                cmd,
                check=False,
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"{' '.join(cmd)} failed in {JS_DIR} (exit {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
    return {"node": node}


@pytest.fixture
def run_scenario(server, pusher_js_env):
    """Run one scenario against ``server``; return the parsed JSON it printed."""

    def run(scenario: str, *extra: str) -> dict:
        cmd = [
            pusher_js_env["node"],
            str(SCENARIOS_JS),
            scenario,
            "--ws-host", str(server.host),
            "--ws-port", str(server.port),
            "--http-port", str(server.port),
            "--app-id", str(server.app_id),
            "--key", str(server.key),
            "--secret", str(server.secret),
            *extra,
        ]  # fmt: skip
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        try:
            out = json.loads(lines[-1])
        except (IndexError, ValueError):
            pytest.fail(
                f"scenario {scenario} printed no JSON (exit {proc.returncode})\n"
                f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
            )
        dump = json.dumps(out, indent=1)[:8000]
        assert proc.returncode == 0 and out.get("ok") is True, (
            f"scenario {scenario} did not complete (exit {proc.returncode}, "
            f"stage {out.get('stage')!r}): {out.get('error')}\n{dump}\nstderr:\n{proc.stderr[-2000:]}"
        )
        assert out["scenario"] == scenario
        return out

    return run


def _client(out: dict, label: str) -> dict:
    return next(c for c in out["clients"] if c["label"] == label)


def _no_pusher_errors(out: dict) -> None:
    assert out["errors"] == [], f"unexpected pusher:error / connection errors: {out['errors']}"


# ---------------------------------------------------------------------------------------------
# 1. public


EXPECTED_HTTP_PAYLOAD = {
    "text": "hello from the HTTP API",
    "n": 1,
    "nested": {"ok": True},
}


def test_public_channel_receives_http_event(run_scenario):
    out = run_scenario("public")
    assert SOCKET_ID_RE.match(out["socket_id"]), out["socket_id"]
    assert out["channel"].startswith("interop-public-")
    assert out["subscribed"] is True
    assert out["trigger_status"] == 200
    # exactly one delivery, name and JSON data intact (pusher-js parses the data string)
    assert out["events"] == [{"name": "interop-event", "data": EXPECTED_HTTP_PAYLOAD}]
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 2. private


def test_private_channel_receives_http_event(run_scenario):
    out = run_scenario("private")
    assert SOCKET_ID_RE.match(out["socket_id"]), out["socket_id"]
    assert out["channel"].startswith("private-interop-")
    assert out["subscribed"] is True
    assert out["trigger_status"] == 200
    assert out["events"] == [{"name": "interop-event", "data": EXPECTED_HTTP_PAYLOAD}]
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 3. presence

ADA = {"id": "user-ada", "info": {"name": "Ada", "role": "admin"}}
BO = {"id": "user-bo", "info": {"name": "Bo", "tags": ["x", "y"]}}


@pytest.mark.parametrize("leave", ["unsubscribe", "disconnect"])
def test_presence_members_join_and_leave(run_scenario, leave):
    out = run_scenario("presence", "--leave", leave)
    assert out["leave"] == leave

    # A alone
    assert out["a_after_join"] == {"count": 1, "each": [ADA], "me": ADA}
    # B's view right after its subscription_succeeded: both members, with their user_info
    assert out["b_after_join"] == {"count": 2, "each": [ADA, BO], "me": BO}
    # A got exactly one member_added, for B, with B's user_info
    assert out["member_added"] == [BO]
    assert out["a_after_b_joined"] == {"count": 2, "each": [ADA, BO], "me": ADA}
    # B left -> A got exactly one member_removed for B and the list is back to A alone
    assert [m["id"] for m in out["member_removed"]] == ["user-bo"]
    assert out["a_after_b_left"] == {"count": 1, "each": [ADA], "me": ADA}
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 4. encrypted


def test_encrypted_channel_decrypts_sdk_payload(run_scenario):
    master_key = "dGhpcnR5LXR3by1ieXRlLW1hc3Rlci1rZXktdGVzdCE="  # 32 bytes
    out = run_scenario("encrypted", "--master-key", master_key)
    expected = {"text": "top secret", "n": 42, "unicode": "h\u00e9llo \u2603"}
    assert out["channel"].startswith("private-encrypted-")
    assert out["subscribed"] is True
    assert out["trigger_status"] == 200
    assert out["decrypted"] == expected
    assert out["events"] == [{"name": "secret-event", "data": expected}]
    # what the server relayed was the SDK's ciphertext envelope, untouched, not the plaintext
    assert len(out["wire"]) == 1
    wire = out["wire"][0]
    if isinstance(wire, str):
        wire = json.loads(wire)
    assert set(wire) == {"nonce", "ciphertext"}, wire
    assert "top secret" not in json.dumps(out["wire"])
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 5. client events


def test_client_events_not_echoed_and_carry_user_id_on_presence(run_scenario):
    out = run_scenario("client-events")
    ada_event = {"user": "ada", "typing": True}
    bo_event = {"user": "bo", "typing": False}

    for kind in ("private", "presence"):
        r = out[kind]
        assert r["a_trigger_sent"] is True and r["b_trigger_sent"] is True, r
        # B got A's event exactly once
        assert [(e["name"], e["data"]) for e in r["b_received"]] == [("client-typing", ada_event)], (kind, r)
        # A never got its own event back, but did get B's (control: A's subscription works)
        assert [(e["name"], e["data"]) for e in r["a_received"]] == [("client-typing", bo_event)], (kind, r)

    assert out["private"]["channel"].startswith("private-chat-")
    assert out["presence"]["channel"].startswith("presence-chat-")
    # presence: the server adds the sender's user_id, pusher-js hands it over as metadata
    pres = out["presence"]
    assert pres["b_received"][0]["metadata"] == {"user_id": out["user_ids"]["A"]}, pres
    assert pres["a_received"][0]["metadata"] == {"user_id": out["user_ids"]["B"]}, pres
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 6. signin + server-to-user


def test_signin_and_server_to_user_event(run_scenario):
    out = run_scenario("signin")
    # pusher:signin_success carries the exact user_data string that was signed and sent
    assert out["signin_success"]["user_data"] == '{"id":"42","user_info":{"name":"Ada"}}'
    assert out["user_data"] == {"id": "42", "user_info": {"name": "Ada"}}
    assert out["server_to_user_channel"] == "#server-to-user-42"
    assert out["server_to_user_subscribed"] is True, "no subscription_succeeded for #server-to-user-42"
    assert out["trigger_status"] == 200
    assert out["user_events"] == [{"name": "user-notice", "data": {"msg": "hi Ada", "n": 7}}]
    _no_pusher_errors(out)


# ---------------------------------------------------------------------------------------------
# 7. auth error


def test_bad_signature_emits_subscription_error_and_stays_connected(run_scenario):
    out = run_scenario("auth-error")
    assert out["channel"].startswith("private-interop-denied-")
    assert out["subscription_outcome_timeout"] is False, (
        f"no channel-scoped pusher:subscription_error within 5 s (frames: {out['frames']})"
    )
    err = out["subscription_error"]
    assert err is not None
    assert err["type"] == "AuthError"
    assert err["status"] == 401
    assert isinstance(err["error"], str) and err["error"]
    assert out["subscription_succeeded"] is False
    assert out["channel_subscribed"] is False
    # the global pusher:error 4009 that accompanies it is non-fatal
    codes = [(e.get("data") or {}).get("code") for e in out["connection_errors"] if isinstance(e, dict)]
    assert 4009 in codes, f"expected a pusher:error 4009, got {out['connection_errors']}"
    # same connection, never dropped, still usable
    assert out["state_after"] == "connected"
    assert out["socket_id_after"] == out["socket_id"]
    assert out["states"] == ["connected"], out["states"]
    assert out["followup_subscribed"] is True
    assert out["state_final"] == "connected"


# ---------------------------------------------------------------------------------------------
# 8. exclusion by socket_id


def test_http_publish_excludes_socket_id(run_scenario):
    out = run_scenario("exclusion")
    a_id, b_id = out["socket_ids"]["A"], out["socket_ids"]["B"]
    assert SOCKET_ID_RE.match(a_id) and SOCKET_ID_RE.match(b_id) and a_id != b_id
    assert out["trigger_status"] == 200
    # B gets the excluded event and the control event; A only the control event
    assert out["b_received"] == [
        {"name": "excluded-event", "data": {"n": 1, "excluded": "A"}},
        {"name": "control-event", "data": {"n": 2}},
    ]
    assert out["a_received"] == [{"name": "control-event", "data": {"n": 2}}]
    _no_pusher_errors(out)
