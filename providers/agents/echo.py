"""The default agent: repeats what it heard. Needs nothing, so a call works out of the box."""

from __future__ import annotations

from providers.base import Agent, AgentContext


class EchoAgent(Agent):
    name = "echo"

    def __init__(self, prefix: str = "You said: ") -> None:
        self.prefix = prefix

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        return f"{self.prefix}{transcript}"
