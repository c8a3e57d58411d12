"""An LLM agent over OpenAI's Chat Completions API (or any compatible server: `base_url`),
streamed, so speech starts on the reply's first sentence. The conversation history of the
session is sent each turn, after the system instructions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from backend.errors import BackendError, ErrorCode
from providers.base import Agent, AgentContext
from providers.openai.config import openai_error

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
    """As `openai_error` maps the SDK's failures, but an answer the API refused (other than a key
    or a rate limit) or anything unforeseen is the agent's error."""
    err = openai_error("agent.openai", exc, service="the API")
    refused = isinstance(exc, openai.APIStatusError) and err.code is ErrorCode.CONNECTION_FAILED
    if refused or err.code is ErrorCode.PIPELINE_ERROR:
        return BackendError(err.op, ErrorCode.AGENT_ERROR, err.message, details=err.details)
    return err
