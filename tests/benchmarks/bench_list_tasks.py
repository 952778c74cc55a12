"""ListTasks on SQLite: how long a page takes and how long it holds up the event loop, by store size.

    python tests/benchmarks/bench_list_tasks.py              # 5,000 and 50,000 tasks
    python tests/benchmarks/bench_list_tasks.py --sizes 5000

One caller's tasks (a tenth working, 100 contexts, a short history and an artifact each) in a
fresh database; each query is listed 20 times while a 1 ms timer runs on the same loop, and the
timer's worst lateness during a list is what the list cost every other request on the loop.
Medians of the 20, on a machine that may be shared: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Artifact, ListTasksRequest, Message, Part, Role, Task, TaskState, TaskStatus

from gateway.store import SqlTaskStore, open_database

ROUNDS = 20
QUERIES = {
    "first page (50)": ListTasksRequest(),
    "by status": ListTasksRequest(status=TaskState.TASK_STATE_WORKING),
    "by context": ListTasksRequest(context_id="ctx-7"),
}


class Caller(User):
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return "ada"


def task(i: int, base_ns: int) -> Task:
    state = TaskState.TASK_STATE_COMPLETED if i % 10 else TaskState.TASK_STATE_WORKING
    made = Task(id=f"task-{i:06d}", context_id=f"ctx-{i % 100}", status=TaskStatus(state=state))
    made.status.timestamp.FromNanoseconds(base_ns + i)
    made.history.append(Message(message_id=f"m{i}", role=Role.ROLE_USER, parts=[Part(text="hello " * 20)]))
    made.artifacts.append(Artifact(artifact_id="a", parts=[Part(text="result " * 40)]))
    return made


async def worst_lateness(stop: asyncio.Event) -> float:
    worst, last = 0.0, time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last - 0.001), now
    return worst


async def measure(size: int) -> None:
    context = ServerCallContext(user=Caller())
    with tempfile.TemporaryDirectory() as folder:
        db = await open_database(f"sqlite:///{folder}/tasks.db")
        store = SqlTaskStore(db, "echo")
        base = time.time_ns()
        for start in range(0, size, 500):
            await asyncio.gather(*(store.save(task(i, base), context) for i in range(start, min(size, start + 500))))
        for name, query in QUERIES.items():
            latencies, stalls = [], []
            for _ in range(ROUNDS):
                stop = asyncio.Event()
                timer = asyncio.ensure_future(worst_lateness(stop))
                await asyncio.sleep(0)
                began = time.perf_counter()
                await store.list(query, context)
                latencies.append(time.perf_counter() - began)
                stop.set()
                stalls.append(await timer)
            print(
                f"{size:>7} tasks  {name:<16} list {statistics.median(latencies) * 1e3:7.2f} ms"
                f"   loop held up {statistics.median(stalls) * 1e3:6.2f} ms (worst {max(stalls) * 1e3:.2f})"
            )
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    for size in parser.parse_args().sizes:
        asyncio.run(measure(size))


if __name__ == "__main__":
    main()
