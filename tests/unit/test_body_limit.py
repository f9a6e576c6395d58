"""serve-api refuses an oversized request body before reading it all or parsing it."""
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tailor.api.limits import BodyLimit


def _client(limit: int) -> TestClient:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=limit)

    @app.post("/echo")
    async def echo(request: Request):
        return {"n": len(await request.body())}
    return TestClient(app)


def test_a_body_over_the_limit_is_413_declared_or_streamed():
    c = _client(2048)
    assert c.post("/echo", content=b"x" * 2048).json() == {"n": 2048}, "at the limit: the app gets it whole"
    r = c.post("/echo", content=b"x" * 2049)
    assert r.status_code == 413 and "serving.max_request_bytes" in r.json()["detail"]

    def chunks():   # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"y" * 1000
    r = c.post("/echo", content=chunks())
    assert r.status_code == 413
    assert c.post("/echo", content=iter([b"a" * 1000, b"b" * 1000])).json() == {"n": 2000}
