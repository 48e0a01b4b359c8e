"""OpenAI-compatible /v1/completions and /v1/chat/completions served from the simulated engine."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from aibrix.sim.engine import SimEngine, count_tokens

ErrorFn = Callable[..., Response]  # (status, message, type[, param])


class AdapterGate(Protocol):
    """An engine's rules for a request naming an adapter (SGLang's: ``sglang.SGLangRequests``)."""

    def checks(self, body: dict[str, Any], chat: bool) -> tuple[int, str, str] | None: ...

    async def acquire(self, body: dict[str, Any]) -> str | None: ...

    async def release(self, adapter: str) -> None: ...


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


# Fields vLLM 0.32 adds to the OpenAI bodies (entrypoints/openai/completion/protocol.py, chat_completion/protocol.py).
VLLM_CHOICE = {"stop_reason": None, "token_ids": None, "routed_experts": None}
VLLM_MESSAGE = {"refusal": None, "annotations": None, "audio": None, "function_call": None, "reasoning": None}
VLLM_BODY = {"service_tier": None, "system_fingerprint": "vllm-0.32.0-sim", "kv_transfer_params": None,
             "ec_transfer_params": None, "metrics": None}  # fmt: skip
VLLM_USAGE: dict[str, Any] = {"prompt_tokens_details": None, "completion_tokens_details": None}


def _vllm_checks(body: dict[str, Any], chat: bool, max_model_len: int) -> tuple[int, str, str, str] | None:
    """vLLM's own 400s for a completion request: (status, message, type, param)."""
    if not chat and not body.get("prompt"):
        message = "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)"
        return 400, message, "BadRequestError", "prompt"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > max_model_len:
        message = (
            f"max_tokens={max_tokens} cannot be greater than max_model_len={max_model_len}. "
            f"Please request fewer output tokens. (parameter=max_tokens, value={max_tokens})"
        )
        return 400, message, "BadRequestError", "max_tokens"
    return None


def completion_handler(
    chat: bool, error: ErrorFn, vllm_max_model_len: int | None = None, sglang: AdapterGate | None = None
) -> Callable[[Request], Any]:
    """A route for completions (``chat`` False) or chat completions, reporting errors through ``error``.
    With ``vllm_max_model_len`` the checks and bodies are vLLM's; with ``sglang`` the checks and the choice of
    adapter are SGLang's."""
    vllm = vllm_max_model_len is not None

    async def handle(request: Request) -> Response:
        engine: SimEngine = request.app.state.engine
        try:
            body = json.loads(await request.body())
            problem: tuple[Any, ...] | None = None
            if vllm_max_model_len is not None:
                problem = _vllm_checks(body, chat, vllm_max_model_len)
            elif sglang is not None:
                problem = sglang.checks(body, chat)
            if problem is not None:
                return error(*problem)
            prompt = _prompt_text(body, chat)
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            if not 1 <= max_tokens <= 4096:
                raise ValueError("'max_tokens' must be between 1 and 4096")
        except (ValueError, TypeError, AttributeError) as exc:
            return error(400, str(exc), "BadRequestError")
        model = body.get("model") or engine.model
        if sglang is not None:  # SGLang never refuses a model name; an adapter is named as it parses them
            try:
                adapter = await sglang.acquire(body)
            except ValueError as exc:
                return error(400, str(exc), "BadRequest")
            release = partial(sglang.release, adapter) if adapter is not None else None
            return await _answer(engine, body, chat, model, prompt, max_tokens, adapter, vllm, release)
        if not engine.serves(model):
            if vllm:
                message = f"The model `{model}` does not exist. Valid aliases: {engine.model}."
                return error(404, message, "NotFoundError", "model")
            return error(404, f"The model `{model}` does not exist.", "NotFoundError")
        adapter = model if model != engine.model else None
        return await _answer(engine, body, chat, model, prompt, max_tokens, adapter, vllm)

    return handle


async def _answer(
    engine: SimEngine,
    body: dict[str, Any],
    chat: bool,
    model: str,
    prompt: str,
    max_tokens: int,
    adapter: str | None,
    vllm: bool,
    done: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """The completion, streamed or whole, in the engine's body shapes; ``done`` once the last token is out."""
    prompt_tokens = count_tokens(prompt)
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    kind = "chat.completion" if chat else "text_completion"

    def choice(text: str, finish: str | None, stream: bool) -> dict[str, Any]:
        if not chat:
            extra = {**VLLM_CHOICE, "prompt_logprobs": None, "prompt_token_ids": None} if vllm else {}
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, **extra}
        key = "delta" if stream else "message"
        message = {"role": "assistant", "content": text, **(VLLM_MESSAGE if vllm and not stream else {})}
        return {
            "index": 0,
            key: message,
            "logprobs": None,
            "finish_reason": finish,
            **(VLLM_CHOICE if vllm else {}),
        }

    if body.get("stream"):

        async def events() -> AsyncIterator[bytes]:
            try:
                async for token in engine.generate(prompt_tokens, max_tokens, adapter):
                    chunk = {
                        "id": request_id,
                        "object": kind + (".chunk" if chat else ""),
                        "created": created,
                        "model": model,
                        "choices": [choice(token, None, True)],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
            finally:
                if done is not None:
                    await done()
            last = {
                "id": request_id,
                "object": kind + (".chunk" if chat else ""),
                "created": created,
                "model": model,
                "choices": [choice("", "length", True)],
            }
            yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    try:
        text = "".join([token async for token in engine.generate(prompt_tokens, max_tokens, adapter)])
    finally:
        if done is not None:
            await done()
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": max_tokens,
        "total_tokens": prompt_tokens + max_tokens,
    }
    reply = {
        "id": request_id,
        "object": kind,
        "created": created,
        "model": model,
        "choices": [choice(text, "length", False)],
        "usage": usage,
    }
    if vllm:
        usage.update(VLLM_USAGE)
        reply.update(VLLM_BODY)
        if chat:
            reply.update({"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None})
    return JSONResponse(reply)
