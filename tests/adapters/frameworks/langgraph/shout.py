"""A plain (sync) function as an agent: what it returns is the reply's text."""

from gateway.runtime import AgentCall


def run(call: AgentCall) -> str:
    """The text sent, in capitals."""
    return call.text.upper()
