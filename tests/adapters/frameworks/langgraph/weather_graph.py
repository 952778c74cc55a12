"""A LangGraph agent for the adapter's tests: a chat model with a forecast tool, and a human check.

The model is LangChain's ``ChatOpenAI``, which finds its endpoint in ``OPENAI_BASE_URL`` (the
tests' scripted server). A request that mentions "send" ends with a question (``interrupt``) whose
answer decides what the graph says last.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt


@tool
def forecast(city: str) -> str:
    """The weather forecast for a city."""
    return f"Sunny in {city}, 21 C"


def build() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph (no checkpointer: the adapter gives it one)."""
    # A client of its own: LangChain shares one per endpoint, bound to the first event loop that used it
    # (each test has a loop of its own).
    client = httpx.AsyncClient()
    model = ChatOpenAI(model="test-model", streaming=True, stream_usage=True, http_async_client=client)
    model_with_tools = model.bind_tools([forecast])

    async def agent(state: MessagesState) -> dict[str, Any]:
        get_stream_writer()("asking the model")
        return {"messages": [await model_with_tools.ainvoke(state["messages"])]}

    def route(state: MessagesState) -> Literal["tools", "confirm", "__end__"]:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        first = next(m for m in state["messages"] if isinstance(m, HumanMessage))
        return "confirm" if "send" in str(first.content).lower() else END

    def confirm(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("Send this forecast to the team? (yes/no)")
        said = str(answer).strip().lower()
        return {"messages": [AIMessage("Sent to the team." if said.startswith("y") else "Not sent.")]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([forecast]))
    graph.add_node("confirm", confirm)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route)
    graph.add_edge("tools", "agent")
    graph.add_edge("confirm", END)
    return graph.compile()
