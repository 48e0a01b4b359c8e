"""OpenAI-compatible /v1/completions and /v1/chat/completions served from the simulated engine."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from aibrix.sim.engine import SimEngine, count_tokens

ErrorFn = Callable[[int, str, str], Response]


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        return " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return " ".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise ValueError("'prompt' must be a string or a list of strings")
    return prompt


def completion_handler(chat: bool, error: ErrorFn) -> Callable[[Request], Any]:
    """A route for completions (``chat`` False) or chat completions, reporting errors through ``error``."""

    async def handle(request: Request) -> Response:
        engine: SimEngine = request.app.state.engine
        try:
            body = json.loads(await request.body())
            prompt = _prompt_text(body, chat)
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            if not 1 <= max_tokens <= 4096:
                raise ValueError("'max_tokens' must be between 1 and 4096")
        except (ValueError, TypeError, AttributeError) as exc:
            return error(400, str(exc), "BadRequestError")
        model = body.get("model") or engine.model
        if not engine.serves(model):
            return error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt_tokens = count_tokens(prompt)
        request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"

        def choice(text: str, finish: str | None, stream: bool) -> dict[str, Any]:
            if not chat:
                return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            key = "delta" if stream else "message"
            return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": finish}

        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                async for token in engine.generate(prompt_tokens, max_tokens):
                    chunk = {
                        "id": request_id,
                        "object": kind + (".chunk" if chat else ""),
                        "created": created,
                        "model": model,
                        "choices": [choice(token, None, True)],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                last = {
                    "id": request_id,
                    "object": kind + (".chunk" if chat else ""),
                    "created": created,
                    "model": model,
                    "choices": [choice("", "length", True)],
                }
                yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

            return StreamingResponse(events(), media_type="text/event-stream")

        text = "".join([token async for token in engine.generate(prompt_tokens, max_tokens)])
        return JSONResponse(
            {
                "id": request_id,
                "object": kind,
                "created": created,
                "model": model,
                "choices": [choice(text, "length", False)],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": max_tokens,
                    "total_tokens": prompt_tokens + max_tokens,
                },
            }
        )

    return handle
