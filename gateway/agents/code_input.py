"""Turn what a caller sent into the source files a review specialist reads."""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.runtime import AgentCall, FileInput

SNIPPET_NAME = "snippet.py"
PYTHON_SUFFIXES = frozenset({".py", ".pyi", ".pyw"})

# A fenced block anywhere in the message, so "please review:\n```python\n...```" works too.
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n`]*\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class SourceFile:
    """One file to review: its display name and its text."""

    name: str
    text: str

    @property
    def is_python(self) -> bool:
        """Whether the file should be parsed as Python (a ``.py``-like name, or no suffix at all)."""
        suffix = PurePosixPath(self.name).suffix.lower()
        return suffix in PYTHON_SUFFIXES or not suffix


@dataclass(frozen=True)
class ParseError:
    """Why a file is not valid Python: the 1-based line (0 when unknown) and the parser's message."""

    line: int
    message: str


def sources_from_call(call: AgentCall) -> tuple[SourceFile, ...]:
    """The files of ``call``; without files, the message text as one snippet. Blank input gives ``()``."""
    if call.files:
        decoded = (_from_file(file) for file in call.files)
        return tuple(source for source in decoded if source is not None)
    return snippets_from_text(call.text)


def snippets_from_text(text: str) -> tuple[SourceFile, ...]:
    """The code in a message: its fenced block(s) if it has any, else the whole text.

    Text that is valid Python as it stands is taken whole, so a fence inside a docstring stays put.
    """
    blocks = [match.group(2) for match in _FENCE.finditer(text)]
    if blocks and not isinstance(parse_python(SourceFile(SNIPPET_NAME, text)), ParseError):
        blocks = []
    bodies = [block for block in blocks if block.strip()] if blocks else [_strip_open_fence(text)]
    return tuple(
        SourceFile(_snippet_name(index), body.strip("\n") + "\n") for index, body in enumerate(bodies) if body.strip()
    )


# CPython 3.11 keeps the AST builder's recursion depth per interpreter, not per thread: two
# threads parsing at once (the reviewers parse in worker threads, concurrently) can fail with
# "SystemError: AST constructor recursion depth mismatch". Parsing is quick; serialise it.
_PARSE_LOCK = threading.Lock()


def parse_python(source: SourceFile) -> ast.Module | ParseError:
    """Parse ``source``, or say why it could not be parsed (syntax, null bytes, absurd nesting)."""
    try:
        with _PARSE_LOCK:
            return ast.parse(source.text, filename=source.name)
    except SyntaxError as exc:
        return ParseError(exc.lineno or 0, exc.msg)
    except (ValueError, RecursionError, MemoryError) as exc:
        return ParseError(0, str(exc) or type(exc).__name__)


def _strip_open_fence(text: str) -> str:
    # A pasted block whose closing fence got lost still should not fail on its opening line.
    lines = text.strip("\n").splitlines()
    if lines and lines[0].lstrip().startswith(("```", "~~~")):
        lines = lines[1:]
    return "\n".join(lines)


def _snippet_name(index: int) -> str:
    return SNIPPET_NAME if index == 0 else f"snippet_{index + 1}.py"


def _from_file(file: FileInput) -> SourceFile | None:
    # URL-only files are skipped: the bundled specialists work offline and never fetch.
    if file.text is not None:
        text = file.text
    elif file.raw is not None:
        text = file.raw.decode("utf-8", errors="replace")
    else:
        return None
    return SourceFile(file.name or "unnamed.py", text) if text.strip() else None
