"""A stand-in OpenAI upstream for load tests: streams 64 chunks at once, no model.

    python tests/reliability/standin.py --host 127.0.0.1 --port P [--env-file IGNORED]
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

CHUNKS = 64


def standin_app() -> web.Application:
    chunk = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1,
             "model": "bench", "choices": [{"index": 0, "delta": {"content": "token "},
                                            "finish_reason": None}]}
    event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    last = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
                usage={"prompt_tokens": 9, "completion_tokens": CHUNKS,
                       "total_tokens": 9 + CHUNKS})
    tail = b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"

    async def complete(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(CHUNKS):
            await response.write(event)
        await response.write(tail)
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "bench", "object": "model", "context_length": 2048}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-file")
    args = parser.parse_args()
    web.run_app(standin_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
