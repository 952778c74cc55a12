"""Google ADK's RemoteA2aAgent, given an agent's card URL, run by ADK's Runner (no model needed: the agent is remote).

Usage (in the interop venv): python adk_call.py CARD_URL TEXT; prints one JSON line: the texts ADK's events carry
and the error an event reported, if any.
"""

from __future__ import annotations

import asyncio
import json
import sys

from google.adk.agents.remote_a2a_agent import RemoteA2aAgent
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types


async def main(card_url: str, text: str) -> None:
    agent = RemoteA2aAgent(name="switchboard_agent", agent_card=card_url)
    runner = Runner(app_name="interop", agent=agent, session_service=InMemorySessionService())
    session = await runner.session_service.create_session(app_name="interop", user_id="tester")
    texts: list[str] = []
    errors: list[str] = []
    message = types.Content(role="user", parts=[types.Part(text=text)])
    async for event in runner.run_async(user_id="tester", session_id=session.id, new_message=message):
        if event.content and event.content.parts:
            texts += [part.text for part in event.content.parts if part.text]
        if event.error_message:
            errors.append(f"{event.error_code}: {event.error_message}")
    print(json.dumps({"texts": texts, "errors": errors}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
