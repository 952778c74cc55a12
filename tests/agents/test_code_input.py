from __future__ import annotations

from gateway.agents.code_input import ParseError, SourceFile, parse_python, sources_from_call
from gateway.runtime import AgentCall, FileInput


def test_files_win_over_the_message_text() -> None:
    call = AgentCall(text="review these", files=(FileInput("a.py", text="x = 1\n"), FileInput("b.py", text="y = 2\n")))

    assert sources_from_call(call) == (SourceFile("a.py", "x = 1\n"), SourceFile("b.py", "y = 2\n"))


def test_raw_file_bytes_are_decoded_with_replacement() -> None:
    call = AgentCall(text="", files=(FileInput("a.py", raw=b"name = '\xff'\n"),))

    assert sources_from_call(call) == (SourceFile("a.py", "name = '\ufffd'\n"),)


def test_blank_and_url_only_files_give_nothing() -> None:
    call = AgentCall(text="", files=(FileInput("a.py", text="  \n"), FileInput("b.py", url="https://example.com/b.py")))

    assert sources_from_call(call) == ()


def test_message_text_becomes_one_snippet_without_its_fence() -> None:
    call = AgentCall(text="```python\nimport os\nos.getcwd()\n```")

    assert sources_from_call(call) == (SourceFile("snippet.py", "import os\nos.getcwd()\n"),)


def test_every_fenced_block_becomes_a_snippet() -> None:
    call = AgentCall(text="First:\n```\na = 1\n```\nthen:\n~~~py\nb = 2\n~~~\n")

    assert sources_from_call(call) == (SourceFile("snippet.py", "a = 1\n"), SourceFile("snippet_2.py", "b = 2\n"))


def test_valid_python_with_a_fence_in_a_docstring_is_taken_whole() -> None:
    code = 'def f():\n    """Example:\n\n    ```\n    f()\n    ```\n    """\n'

    assert sources_from_call(AgentCall(text=code)) == (SourceFile("snippet.py", code),)


def test_unclosed_fence_is_dropped() -> None:
    assert sources_from_call(AgentCall(text="```python\nx = 1")) == (SourceFile("snippet.py", "x = 1\n"),)


def test_blank_message_gives_nothing() -> None:
    assert sources_from_call(AgentCall(text=" \n\t")) == ()


def test_parse_failure_reports_line_and_reason() -> None:
    result = parse_python(SourceFile("bad.py", "x = 1\ndef f(:\n"))

    assert isinstance(result, ParseError)
    assert result.line == 2


def test_non_python_names_are_recognised() -> None:
    assert SourceFile("a.py", "").is_python
    assert SourceFile("Makefile", "").is_python  # no suffix: treated as a pasted script
    assert not SourceFile("README.md", "").is_python
