"""A cap on request bodies, before anything parses them: ``serving.max_request_texts`` bounds how
many texts a request holds, but only after the whole body was read and parsed as JSON, so one
request of a gigabyte would still be read into memory. This ASGI middleware answers 413 as soon as
the declared length, or the bytes received so far, pass ``max_bytes``."""
from __future__ import annotations

import json


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        body, more = [], True
        size = 0
        while more:   # read it all here (bounded), then hand the app the same messages
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(send)
            body.append(message)
            more = message.get("more_body", False)
        queued = iter(body)

        async def replay():
            return next(queued, None) or await receive()
        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        detail = json.dumps({"detail": f"request body over {self.max_bytes} bytes (serving.max_request_bytes)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": detail.encode()})
