"""Admission control in front of the app: expensive requests bounded, clients rate-limited."""

import asyncio

import httpx

from app.admission import Admission


class Held:
    """An ASGI app whose answers wait until released: requests stay in flight."""

    def __init__(self):
        self.release = asyncio.Event()
        self.started = 0

    async def __call__(self, scope, receive, send):
        self.started += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_past_the_bound_an_expensive_request_gets_503_with_retry_after():
    async def scenario():
        held = Held()
        app = Admission(held, max_expensive=2)
        async with client_of(app) as client:
            first = [asyncio.create_task(client.post("/evaluate")) for _ in range(2)]
            await until(lambda: held.started == 2)
            refused = await client.post("/songs/similar/batch", json={})
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert "the limit is 2 (MUSICSIM_MAX_EXPENSIVE_REQUESTS)" in refused.text
            cheap = asyncio.create_task(client.get("/songs/5"))  # not expensive: admitted
            await until(lambda: held.started == 3)
            held.release.set()
            assert [r.status_code for r in await asyncio.gather(*first, cheap)] == [200] * 3
            assert (await client.post("/songs/audio")).status_code == 200  # places are freed

    asyncio.run(scenario())


def test_a_client_past_its_rate_gets_429_and_health_is_never_limited():
    async def scenario():
        held = Held()
        held.release.set()
        app = Admission(held, max_expensive=10, rate_per_minute=3)
        async with client_of(app) as client:
            statuses = [(await client.get("/genres")).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            limited = await client.get("/genres")
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
            assert "more than 3 requests a minute" in limited.text
            assert (await client.get("/health")).status_code == 200

    asyncio.run(scenario())


def test_without_a_rate_limit_no_client_is_refused():
    async def scenario():
        held = Held()
        held.release.set()
        async with client_of(Admission(held, max_expensive=1, rate_per_minute=0)) as client:
            for _ in range(50):
                assert (await client.get("/genres")).status_code == 200

    asyncio.run(scenario())
