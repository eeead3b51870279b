"""Item 1 end to end: the real backend (``vps_app.py`` on the embedded model) behind a
segmenting relay, the real orchestrator in front: whole answers come back whole."""

from __future__ import annotations

import pytest

from tests.reliability.relay import SegmentingRelay
from tests.services import Service, free_port

pytestmark = [pytest.mark.reliability, pytest.mark.model]

REQUESTS = 4  # past the breaker's threshold (3): each used to be a 502, then 503s
# Smaller segments than a tunnel's 1,400 bytes so that short answers (a few
# seconds of generation on a busy 2-core CI machine) still span several.
SEGMENT = 200


@pytest.fixture(scope="module")
def real_backend(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("tunnel") / "vps.log"
    backend = Service("vps_app.py", ["--dev"], {"CEREBRUM_THREADS": "2",
                                                "CEREBRUM_MAX_CPU_PERCENT": "1000",
                                                "CEREBRUM_MIN_FREE_RAM_MB": "0"},
                      log, free_port())
    backend.start()
    yield backend
    backend.stop()


async def test_whole_answers_from_the_real_backend_cross_a_tunnel(real_backend,
                                                                  make_orchestrator) -> None:
    async with SegmentingRelay(real_backend.port, segment=SEGMENT) as relay:
        client = await make_orchestrator(relay.url, read_timeout_s=120.0)
        sizes = []
        for index in range(REQUESTS):
            response = await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user",
                              "content": f"Write a long story about dragon number {index}."}],
                "max_tokens": 40, "temperature": 0.7,
                "cerebrum": {"optimize": False}})
            body = await response.read()
            assert response.status == 200, body[:500]
            answer = await response.json()
            assert answer["object"] == "chat.completion"
            assert answer["choices"][0]["message"]["content"]
            sizes.append(len(body))
        # The answers really were cut into segments on the way.
        assert max(sizes) > relay.segment, sizes
        assert relay.segments > REQUESTS
        health = await (await client.get("/health")).json()
        assert health["backends"][0]["breaker"] == "closed"
