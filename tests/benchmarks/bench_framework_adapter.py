"""Framework adapter overhead: a LangGraph graph through the gateway against the graph run directly, in one process.

The gateway app is built in-process (as ``bench_orchestration.py`` does) over two agents: the
LangGraph test graph of ``tests/adapters/frameworks/langgraph`` (``weather_graph:build``: one
model call per run, no tools on this path) and a no-op python agent (``noop_agent.noop``). The
graph's model is LangChain's ``ChatOpenAI`` at the tests' scripted OpenAI-compatible server,
started in the same process, answering every call with the same short streamed text. Four arms,
their order alternating every round:

* ``graph-gateway``  the graph agent's A2A request handler (``on_message_send``), to its completed task;
* ``graph-direct``   the same graph (compiled with an in-memory checkpointer, as the adapter runs it)
  with ``ainvoke`` on a fresh thread: running the framework agent directly;
* ``graph-stream``   the same graph streamed directly with the adapter's stream modes (updates,
  messages, custom), every part read: what token streaming costs in LangGraph itself;
* ``noop-gateway``   the no-op agent's handler, the same way as the graph's;
* ``noop-direct``    the no-op function called directly;
* ``wait-gateway`` / ``wait-direct``  the same for a python agent that waits 1 ms (``noop_agent.wait_briefly``).

The no-op agent never lets the event loop sleep; an agent that waits (as the graph does, on its model)
does, and on a loaded machine the same instructions cost more CPU right after a sleep (other processes
had the core and its caches: bench_mcp_runtime.py's ``cold-gateway`` arm measures it, ~1.7x). Both write
their task twice. The ``wait`` arms measure that, and the report gives the adapter's added p50 over a
waiting agent's too.

The adapter's added cost is ``p50(graph-gateway) - p50(graph-direct)``, the gateway's own
``p50(noop-gateway) - p50(noop-direct)``; the target (issue #19) is the first <= 1.5x the second.
A second ratio, reported to explain the first, leaves LangGraph's own streaming out:
``(p50(graph-gateway) - p50(graph-stream)) / (p50(noop-gateway) - p50(noop-direct))``.
Usage::

    python tests/benchmarks/bench_framework_adapter.py --quick     # under a minute
    python tests/benchmarks/bench_framework_adapter.py             # a few minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.runtime import AgentCall  # noqa: E402
from tests.adapters.llm_server import Stream, finish_chunk, scripted_chat_server, text_chunk, usage_chunk  # noqa: E402
from tests.benchmarks import rounds_cli as rounds  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError, Ratio  # noqa: E402
from tests.benchmarks.bench_orchestration import RunFn, _completed, _NullEmitter, window  # noqa: E402
from tests.benchmarks.noop_agent import noop, wait_briefly  # noqa: E402
from tests.orchestration.fixture_agents import agent_file, agents_folder, python_agent  # noqa: E402

GRAPH = "tests.adapters.frameworks.langgraph.weather_graph:build"
ANSWER = "Sunny in Oslo."
QUESTION = "Weather in Oslo?"
ARMS = ("graph-gateway", "graph-direct", "graph-stream", "noop-gateway", "noop-direct", "wait-gateway", "wait-direct")
STREAM_MODES = ["updates", "messages", "custom"]
TARGET_RATIO = 1.5


class Forever(list[Any]):
    """A script that never runs out: every model call gets the same answer."""

    def pop(self, index: Any = -1) -> Any:
        return self[0]


def write_agents(folder: Path) -> Path:
    files = [
        python_agent("noop", "tests.benchmarks.noop_agent:noop"),
        python_agent("wait", "tests.benchmarks.noop_agent:wait_briefly"),
        agent_file("bench-graph", {"kind": "langgraph", "agent": GRAPH}),
    ]
    return agents_folder(folder, files)


def a2a_request(text: str) -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    return SendMessageRequest(message=message)


def arm_runner(gateway: Gateway, arm: str, graph: Any) -> RunFn:
    """One run through ``arm`` (see the module docstring)."""
    if arm == "graph-direct":

        async def run_graph() -> None:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            state = await graph.ainvoke({"messages": [{"role": "user", "content": QUESTION}]}, config)
            if state["messages"][-1].content != ANSWER:
                raise BenchError(f"the graph answered {state['messages'][-1].content!r}")

        return run_graph
    if arm == "graph-stream":

        async def stream_graph() -> None:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            request = {"messages": [{"role": "user", "content": QUESTION}]}
            parts = [part async for part in graph.astream(request, config, stream_mode=STREAM_MODES)]
            if not parts:
                raise BenchError("the graph streamed nothing")

        return stream_graph
    if arm in ("noop-direct", "wait-direct"):
        emitter = _NullEmitter()
        function = noop if arm == "noop-direct" else wait_briefly

        async def run_function() -> None:
            await function(AgentCall(text="hi"), emitter)

        return run_function
    agent, text = ("bench-graph", QUESTION) if arm == "graph-gateway" else (arm.removesuffix("-gateway"), "hi")
    handler = gateway.agents[agent].handler

    async def run_handler() -> None:
        task = await handler.on_message_send(a2a_request(text), ServerCallContext())
        _completed(task, agent)

    return run_handler


async def measure(args: argparse.Namespace, work: Path) -> dict[str, rounds.Samples]:
    """Wall and CPU milliseconds of every run, per arm and round."""
    async with scripted_chat_server() as chat:
        chat.script = Forever(
            [Stream([text_chunk("Sunny "), text_chunk("in Oslo."), finish_chunk(), usage_chunk(9, 4)])]
        )
        os.environ["OPENAI_BASE_URL"] = chat.base_url
        os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
        from langgraph.checkpoint.memory import InMemorySaver

        from tests.adapters.frameworks.langgraph.weather_graph import build

        graph = build().copy({"checkpointer": InMemorySaver()})
        async with rounds.in_process(work, write_agents(work / "agents")) as gateway:
            runners = {arm: arm_runner(gateway, arm, graph) for arm in ARMS}
            return await rounds.alternate(args, runners, window, warmup_runs=3)


def added(
    samples: rounds.Samples, index: int | None = None, floor: str = "graph-direct", python: str = "noop"
) -> tuple[float, float]:
    """(graph-gateway over ``floor``, the ``python`` agent's gateway over direct) in ms.

    Pooled over the rounds, or of round ``index``.
    """
    graph = rounds.p50(samples, "graph-gateway", index) - rounds.p50(samples, floor, index)
    return graph, rounds.p50(samples, f"{python}-gateway", index) - rounds.p50(samples, f"{python}-direct", index)


def added_ratio(samples: rounds.Samples, index: int | None = None, **which: str) -> float | None:
    """The graph's ``added`` over the python agent's (``which``: ``added``'s floor and python agent)."""
    graph, gateway = added(samples, index, **which)
    # A floor slower than the gateway's arm (a busy machine's noise) leaves nothing to judge.
    return graph / gateway if gateway > 0 and graph > 0 else None


def judged(samples: rounds.Samples, **which: str) -> tuple[float, float] | None:
    """``added`` pooled over the rounds, where ``added_ratio`` has something to judge."""
    return added(samples, **which) if added_ratio(samples, **which) is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    args = rounds.round_args(
        argv,
        "LangGraph adapter overhead vs the gateway's own for a no-op agent.",
        out="framework_adapter.json",
        min_runs=5,
    )
    load = list(os.getloadavg())
    times = rounds.measured(args, "framework", measure)
    walls, cpus = times["wall"], times["cpu"]

    def ratio(name: str, detail: str, samples: rounds.Samples, target: float | None = None, **which: str) -> Ratio:
        return rounds.ratio(name, detail, lambda i: added_ratio(samples, i, **which), args.rounds, target)

    ratios = [
        ratio(
            "langgraph adapter's added p50 / gateway's added p50 for a no-op python agent",
            "(p50 graph-gateway - p50 graph-direct) / (p50 noop-gateway - p50 noop-direct), pooled rounds",
            walls,
            TARGET_RATIO,
        ),
        ratio(
            "gateway's cost of hosting the streamed graph / gateway's added p50 for a no-op python agent",
            "(p50 graph-gateway - p50 graph-stream) / (p50 noop-gateway - p50 noop-direct): "
            "LangGraph's streaming left out",
            walls,
            floor="graph-stream",
        ),
        ratio(
            "the same, in CPU time (the process's, the in-process model server's included in every graph arm)",
            "(p50 cpu graph-gateway - p50 cpu graph-direct) / (p50 cpu noop-gateway - p50 cpu noop-direct)",
            cpus,
        ),
        ratio(
            "hosting the streamed graph, in CPU time",
            "(p50 cpu graph-gateway - p50 cpu graph-stream) / (p50 cpu noop-gateway - p50 cpu noop-direct)",
            cpus,
            floor="graph-stream",
        ),
        *(
            ratio(
                f"langgraph adapter's added p50 / a waiting python agent's ({kind})",
                f"(p50 graph-gateway - p50 graph-direct) / (p50 wait-gateway - p50 wait-direct), {kind}",
                times[kind],
                python="wait",
            )
            for kind in rounds.KINDS
        ),
    ]
    arms = rounds.arm_medians(times)
    pooled, hosting = judged(walls), judged(walls, floor="graph-stream")
    cpu_pooled, cpu_hosting = judged(cpus), judged(cpus, floor="graph-stream")
    if pooled:
        print(f"added p50: langgraph adapter {pooled[0]:.3f} ms, no-op python agent {pooled[1]:.3f} ms")
    if hosting:
        print(f"over the graph streamed directly: {hosting[0]:.3f} ms")
    rounds.write_report(
        args,
        "framework-adapter",
        load,
        arms,
        ratios,
        added_ms={"langgraph": pooled[0], "noop": pooled[1]} if pooled else None,
        hosting_streamed_graph_ms=hosting[0] if hosting else None,
        added_cpu_ms={"langgraph": cpu_pooled[0], "noop": cpu_pooled[1]} if cpu_pooled else None,
        hosting_streamed_graph_cpu_ms=cpu_hosting[0] if cpu_hosting else None,
    )
    missed = ratios[0].value is None or ratios[0].value > TARGET_RATIO
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
