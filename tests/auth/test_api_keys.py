"""API keys: made by ``switchboard apikey new``, configured hashed (env or file), matched in constant time,
and the caller they name is ``apikey:<name>`` with its scopes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.auth.api_keys import ApiKey, ApiKeyTable, AuthConfigError, hash_api_key
from gateway.auth.policy import AuthPolicy
from gateway.cli import main
from gateway.errors import AuthenticationError, MissingCredentialsError
from gateway.settings import Settings
from gateway.testing import running_gateway
from tests.auth.conftest import ApiKeys, JwksServer, auth_settings


def made_key(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(["apikey", "new", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    key = next(line for line in out if line.startswith("sb_"))
    line = next(line for line in out if re.match(r"^[\w.-]+:[0-9a-f]{64}", line))
    return key, line


def test_apikey_new_prints_the_key_once_and_a_line_holding_only_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    key, line = made_key(capsys, "ci-bot", "--scopes", "notes:use,vault:use")
    assert line == f"ci-bot:{hash_api_key(key)}:notes:use,vault:use"
    assert key not in line
    assert ApiKeyTable([ApiKey.parse(line)]).identify(key) == ("ci-bot", {"notes:use", "vault:use"})
    other, _ = made_key(capsys, "ci-bot")
    assert other != key and len(key) > 40


def test_apikey_new_names_the_settings_its_line_goes_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apikey", "new", "ops"]) == 0
    said = capsys.readouterr().out
    # the names a user sets, not a settings field's name ('auth_api_keys_file') that no command line takes
    assert "SWITCHBOARD_AUTH_API_KEYS " in said and "SWITCHBOARD_AUTH_API_KEYS_FILE" in said, said
    assert "auth_api_keys_file" not in said, said


def test_apikey_new_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apikey", "new", "no spaces"]) == 2
    assert "use 1 to 64 letters" in capsys.readouterr().err


def test_keys_come_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ApiKeys()
    first, second = keys.lines()
    monkeypatch.setenv("SWITCHBOARD_AUTH_API_KEYS", first)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# callers\n{second}  # no scopes\n\n", encoding="utf-8")
    table = ApiKeyTable.from_settings(Settings(auth_api_keys_file=key_file))
    assert table.identify(keys.ci) == ("ci", {"notes:use", "vault:use"})
    assert table.identify(keys.bare) == ("bare", frozenset())
    with pytest.raises(AuthenticationError, match="API key is not valid"):
        table.identify(keys.ci + "x")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("ci:abc", "is not 'name:sha256-hex-of-key"),
        (f"ci:{'0' * 64}:has space", "is not a scope"),
        ("no digest", "is not 'name:sha256-hex-of-key"),
    ],
)
def test_malformed_key_lines_are_refused_at_start(line: str, problem: str) -> None:
    with pytest.raises(AuthConfigError, match=problem):
        ApiKey.parse(line)


def test_key_names_are_unique_and_the_file_must_exist(tmp_path: Path) -> None:
    line = f"ci:{'0' * 64}"
    with pytest.raises(AuthConfigError, match="unique: ci"):
        ApiKeyTable([ApiKey.parse(line), ApiKey.parse(line)])
    with pytest.raises(AuthConfigError, match="cannot read the API key file"):
        ApiKeyTable.from_settings(Settings(auth_api_keys_file=tmp_path / "missing.txt"))


async def test_bad_key_file_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    from gateway.app import create_app

    with pytest.raises(AuthConfigError):
        create_app(Settings(data_dir=tmp_path, auth_api_keys=["not-a-key-line"]))


async def test_missing_credentials_say_which_kinds_are_accepted() -> None:
    only_keys = AuthPolicy(ApiKeyTable([ApiKey.parse(f"ci:{'0' * 64}")]), None)
    with pytest.raises(MissingCredentialsError, match=r"send an API key \(X-API-Key\)$"):
        await only_keys.authenticate(None, None)
    with pytest.raises(AuthenticationError, match="bearer tokens are not accepted here"):
        await only_keys.authenticate("Bearer abc.def.ghi", None)


async def test_an_api_key_caller_owns_its_tasks(tmp_path: Path, jwks: JwksServer, api_keys: ApiKeys) -> None:
    settings = auth_settings(tmp_path, jwks.url, api_keys)
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers={"A2A-Version": "1.0"}) as http,
    ):
        message = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "mine"}]}
        sent = await http.post(
            "/agents/notes/message:send", json={"message": message}, headers={"X-API-Key": api_keys.ci}
        )
        task_id = sent.json()["task"]["id"]
        rows = await gateway.app.state.gateway.db.fetch_all("SELECT owner FROM tasks WHERE id = ?", (task_id,))
    assert [r[0] for r in rows] == ["apikey:ci"]
