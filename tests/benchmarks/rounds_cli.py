"""The command line and the set-up every alternating-rounds benchmark shares (cache, contract-net, mcp runtime, ...).

``round_args`` parses ``--quick --rounds --window --min-runs --warmup --out --strict`` with the
script's defaults (``--quick``: 2 short rounds); ``measured`` runs the script's ``measure(args, work)``
in a fresh temporary folder, removed afterwards, with SIGTERM turned into a clean exit.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def round_args(
    argv: Sequence[str] | None,
    description: str,
    *,
    out: str,
    min_runs: int,
    rounds: int = 6,
    window_s: float = 3.0,
    quick_window_s: float = 1.0,
) -> argparse.Namespace:
    """The parsed options, ``rounds`` and ``window`` filled in from ``--quick`` or the defaults given."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="2 short rounds")
    p.add_argument("--rounds", type=int)
    p.add_argument("--window", type=float, help="seconds of runs per arm per round")
    p.add_argument("--min-runs", type=int, default=min_runs)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=Path("bench-results") / out)
    p.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else rounds)
    args.window = args.window or (quick_window_s if args.quick else window_s)
    return args


def measured(args: argparse.Namespace, prefix: str, measure: Callable[[argparse.Namespace, Path], Awaitable[T]]) -> T:
    """``measure(args, work)`` run to its end in a temporary folder ``work`` (removed after)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{prefix}-"))
    try:
        return asyncio.run(measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
