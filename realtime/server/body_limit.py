"""The HTTP API's body limit for any ASGI server (used with ``SERVER_FAST_PATHS=false``).

Django's handler reads a whole body before a view can refuse it (into a spooled temporary file) and
applies ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only when the view reads ``request.body``, with a plain
400. This wrapper answers the API's 413 before the application reads anything: at once for a
declared ``Content-Length`` over the limit, and, for a body without one, as soon as the bytes
received pass the limit (the application is told the client went away, which stops Django's
reading, and the 413 is sent in its place).

It cannot keep the server from buffering: stock daphne receives the whole body (Twisted spools it
to a temporary file) and puts all of it in the application's queue before the application starts.
The tuned transport refuses such bodies before reading them (``tuning.BodyOnlyRequest``,
``http_channel``).
"""

from __future__ import annotations

from typing import Any

from realtime.server.refusal import too_large


def limit_body(application: Any, max_body: int) -> Any:
    head, _, body = too_large(max_body).partition(b"\r\n\r\n")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]

    async def refuse(send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def limited(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await application(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > max_body:
                return await refuse(send)
        received = 0
        over = False
        started = False

        async def counting_receive() -> dict:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message: dict) -> None:
            nonlocal started
            if over:
                return  # the 413 is this request's answer
            started = True
            await send(message)

        await application(scope, counting_receive, watching_send)
        if over and not started:
            await refuse(send)
        return None

    return limited
