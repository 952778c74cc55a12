"""Microsoft Agent Framework's A2AAgent, built from the card its A2A card resolver fetches from an agent's URL.

Usage (in the interop venv): python maf_call.py AGENT_URL TEXT; prints one JSON line with the reply's text.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
from a2a.client import A2ACardResolver
from agent_framework_a2a import A2AAgent


async def main(agent_url: str, text: str) -> None:
    async with httpx.AsyncClient(timeout=30.0) as http:
        card = await A2ACardResolver(http, base_url=agent_url).get_agent_card()
    async with A2AAgent(agent_card=card) as agent:
        response = await agent.run(text)
    print(json.dumps({"agent": card.name, "text": response.text}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
