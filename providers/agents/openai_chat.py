"""An LLM agent over OpenAI's Chat Completions API (or any compatible server: `base_url`),
streamed, so speech starts on the reply's first sentence. The conversation history of the
session is sent each turn, after the system instructions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from backend.errors import BackendError, ErrorCode
from providers.base import Agent, AgentContext
from providers.retry import retry_after_details

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. Your answers are spoken aloud: keep them short, plain "
    "sentences without lists, markup or emoji."
)


class OpenAIAgent(Agent):
    name = "openai"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key: str | None = None,  # None: the SDK reads OPENAI_API_KEY
        instructions: str = DEFAULT_INSTRUCTIONS,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.model = model
        self.instructions = instructions
        self.temperature = temperature
        self.max_tokens = max_tokens
        try:
            self._client = openai.AsyncOpenAI(
                base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
            )
        except openai.OpenAIError as exc:  # e.g. no key given and none in the environment
            raise BackendError(
                "agent.openai", ErrorCode.INVALID_CONFIG, f"agent: {exc}", field="agent.api_key"
            ) from None

    def _messages(self, transcript: str, ctx: AgentContext) -> list[dict[str, str]]:
        history = list(ctx.history)
        if not history or history[-1] != {"role": "user", "content": transcript}:
            history.append({"role": "user", "content": transcript})
        return [{"role": "system", "content": self.instructions}, *history]

    async def stream(self, transcript: str, ctx: AgentContext) -> AsyncIterator[str]:
        options: dict[str, object] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=self._messages(transcript, ctx),  # type: ignore[arg-type]
                stream=True,
                **options,  # type: ignore[arg-type]
            )
            async for chunk in chunks:
                if chunk.choices and (piece := chunk.choices[0].delta.content):
                    yield piece
        except openai.OpenAIError as exc:
            raise _agent_error(exc) from None

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        return "".join([piece async for piece in self.stream(transcript, ctx)])

    async def aclose(self) -> None:
        await self._client.close()


def _agent_error(exc: openai.OpenAIError) -> BackendError:
    op = "agent.openai"
    if isinstance(exc, openai.AuthenticationError):
        return BackendError(op, ErrorCode.AUTHENTICATION_FAILED, "the API key was refused")
    if isinstance(exc, openai.PermissionDeniedError):
        return BackendError(op, ErrorCode.AUTHORIZATION_FAILED, "the API key may not do this")
    if isinstance(exc, openai.RateLimitError):
        return BackendError(
            op,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            "rate limited by the API",
            details=retry_after_details(exc, status=exc.status_code),
        )
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(op, ErrorCode.CONNECTION_TIMEOUT, "the API did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(op, ErrorCode.CONNECTION_FAILED, "cannot reach the API")
    if isinstance(exc, openai.APIStatusError):
        return BackendError(op, ErrorCode.AGENT_ERROR, f"the API answered {exc.status_code}")
    return BackendError(op, ErrorCode.AGENT_ERROR, str(exc))
