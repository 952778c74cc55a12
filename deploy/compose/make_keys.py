"""Make the compose stack's API keys once: one for you (operator) and one for Prometheus to scrape with.

Run by the compose file's ``keys`` service into a volume the gateway and Prometheus mount read-only:

    python make_keys.py DIR     writes DIR/api-keys (the gateway's SWITCHBOARD_AUTH_API_KEYS_FILE: one
                                'name:sha256-of-key' line per key), DIR/operator.key and DIR/prometheus.key

A directory that already holds ``api-keys`` is left alone, so keys survive ``docker compose up`` again.
Only the gateway's documented key format is used here (the digest of the key, never the key itself),
so this runs with nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from pathlib import Path

CALLERS = {"operator": "", "prometheus": "metrics:read"}
"""Each caller and the scopes its key grants (a scrape of /metrics on the HTTP port needs metrics:read)."""
KEYS_FILE = "api-keys"


def new_key() -> str:
    """A random API key (256 bits), in the gateway's ``sb_`` form."""
    return "sb_" + secrets.token_urlsafe(32)


def write(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner and its group only (Prometheus joins the group)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def make_keys(directory: Path) -> bool:
    """Write the keys into ``directory`` unless it has them; whether it wrote any."""
    if (directory / KEYS_FILE).exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o750)  # the group (Prometheus joins it) may enter; others may not
    lines = []
    for name, scopes in CALLERS.items():
        key = new_key()
        write(directory / f"{name}.key", key + "\n")
        line = f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"
        lines.append(f"{line}:{scopes}" if scopes else line)
    write(directory / KEYS_FILE, "# made by deploy/compose/make_keys.py\n" + "\n".join(lines) + "\n")
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    made = make_keys(target)
    print(f"{'made' if made else 'kept'} API keys in {target}: {', '.join(CALLERS)}")
