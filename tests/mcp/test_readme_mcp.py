"""The README's MCP Python example, over HTTP as its MCP section says: the same code with
``streamable_http_client(URL)`` in place of ``stdio_client(server)``, against a running gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.testing import running_gateway
from tests.conftest import make_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def mcp_example() -> str:
    """The Python block of the README's MCP section (the one that starts ``switchboard mcp``)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## MCP")
    section = text[start : text.index("\n## ", start + 1)]
    [block] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def over_http(block: str, url: str) -> str:
    """The substitution the README describes, checked to apply: one import and one client swapped."""
    swaps = {
        "from mcp.client.stdio import stdio_client": "from mcp.client.streamable_http import streamable_http_client",
        "stdio_client(server)": f"streamable_http_client({url!r})",
        "asyncio.run(main())": "",  # the test awaits main() on its own loop
    }
    for old, new in swaps.items():
        assert block.count(old) == 1, f"the README's MCP example no longer has {old!r}"
        block = block.replace(old, new)
    return block


async def test_the_readme_mcp_example_runs_over_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with running_gateway(make_settings(tmp_path)) as gateway:
        namespace: dict[str, object] = {}
        exec(compile(over_http(mcp_example(), f"{gateway.url}/mcp"), "README.md", "exec"), namespace)
        main = namespace["main"]
        assert callable(main)
        await main()
    printed = capsys.readouterr().out
    assert "'code_review'" in printed, printed  # the tool list
    assert "SEC002 eval-exec" in printed, printed  # the review of the example's eval()
