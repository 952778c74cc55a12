"""The AST half of the security reviewer: risky calls, hard-coded secrets, SQL built from strings."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from gateway.agents.findings import Finding

SOURCE = "security"
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey", "credential"})
KEY_QUALIFIERS = frozenset({"api", "private", "secret", "access", "auth", "signing", "encryption", "client", "master"})
# Values that stand for a secret rather than being one: "${DB_PASSWORD}", "<token>", "***".
PLACEHOLDER = re.compile(r"^(?:\$\{.*\}|\{.*\}|<.*>|%\(.*\)s|\*+|x+|\.\.\.)$", re.IGNORECASE)
SQL_START = re.compile(
    r"^\s*\(?\s*(?:select\b.*?\bfrom\b|insert\s+into\b|update\s+\S+\s+set\b|delete\s+from\b"
    r"|replace\s+into\b|merge\s+into\b|drop\s+table\b|with\b.*?\bselect\b)",
    re.IGNORECASE | re.DOTALL,
)
EXECUTE_METHODS = frozenset({"execute", "executemany", "executescript", "read_sql", "read_sql_query"})
SAFE_YAML_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})
SHELL_ALWAYS = frozenset({"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"})
SHELL_OPTIONAL = frozenset(f"subprocess.{name}" for name in ("run", "call", "check_call", "check_output", "Popen"))
DESERIALIZERS = frozenset(
    f"{module}.{name}" for module in ("pickle", "cPickle", "_pickle", "dill", "marshal") for name in ("load", "loads")
) | {"shelve.open", "yaml.unsafe_load", "jsonpickle.decode"}
EVALS = frozenset({"eval", "exec", "builtins.eval", "builtins.exec"})


def mask_secret(value: str) -> str:
    """Enough of a secret to recognise it, never enough to use it: at most 4 leading chars."""
    return f"{value[: min(4, len(value) // 4)]}…"


def is_secret_name(name: str) -> bool:
    """Whether an identifier names a credential: ``API_TOKEN``, ``dbPassword``, ``SECRET_KEY``.

    Only the last word counts, so ``token_url`` and ``password_prompt`` are not secrets.
    """
    words = [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]
    if not words:
        return False
    if words[-1] in SECRET_WORDS:
        return True
    return words[-1] == "key" and len(words) > 1 and words[-2] in KEY_QUALIFIERS


def dynamic_string_text(node: ast.expr) -> str | None:
    """The literal text of a string built at run time (f-string, ``%``, ``+``, ``.format``), else ``None``."""
    if isinstance(node, ast.JoinedStr):
        has_values = any(isinstance(value, ast.FormattedValue) for value in node.values)
        return _literal_text(node) if has_values else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _literal_text(node.left) or None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = _add_operands(node)
        texts = [_literal_text(part) for part in parts]
        dynamic = any(not isinstance(part, ast.Constant) for part in parts)
        return "".join(texts) if dynamic and any(texts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _literal_text(node.func.value) or None
    return None


def _literal_text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal_text(value) for value in node.values if isinstance(value, ast.Constant))
    return ""


def _add_operands(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _add_operands(node.left) + _add_operands(node.right)
    return [node]


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
        return str(target.slice.value)
    return None


def _secret_literal(value: ast.expr | None) -> str | None:
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return None
    text = value.value.strip()
    return text if text and not PLACEHOLDER.match(text) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and bool(node.value)


class SecurityVisitor(ast.NodeVisitor):
    """Walks one module and collects findings; import aliases resolve calls to dotted names."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []
        self.aliases: dict[str, str] = {}
        self.covered: set[int] = set()  # string nodes already reported as part of an execute() call
        self.call_checks: tuple[tuple[Callable[[str], bool], Callable[[ast.Call, str], None]], ...] = (
            (EVALS.__contains__, self._check_eval),
            (lambda name: name in SHELL_ALWAYS or name in SHELL_OPTIONAL, self._check_shell),
            (lambda name: name in DESERIALIZERS or name in {"yaml.load", "yaml.load_all"}, self._check_deserialize),
        )

    def add(self, node: ast.AST, rule: str, severity: str, message: str, hint: str) -> None:
        """Record a finding at ``node``'s line."""
        line = getattr(node, "lineno", 0)
        self.findings.append(Finding(self.file, line, rule, severity, message, hint, SOURCE))

    def dotted(self, node: ast.expr) -> str:
        """``sp.run`` -> ``subprocess.run`` after ``import subprocess as sp``; ``""`` when not a plain name."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else ""
        return ""

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else local

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if node.module and not node.level:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_secret(node, _target_name(target), node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_secret(node, _target_name(node.target), node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
            self._check_secret(value, name, value)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            self._check_secret(keyword.value, keyword.arg, keyword.value)
        name = self.dotted(node.func)
        for matches, check in self.call_checks:
            if matches(name):
                check(node, name)
        self._check_execute(node)
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr) and id(node) not in self.covered:
            self._check_sql_building(node)
        super().generic_visit(node)

    def _check_secret(self, node: ast.AST, name: str | None, value: ast.expr | None) -> None:
        secret = _secret_literal(value)
        if name and secret and is_secret_name(name):
            message = f"hard-coded secret assigned to `{name}`: {mask_secret(secret)}"
            hint = f"read it at run time, e.g. os.environ[{name.upper()!r}], or from a secret store"
            self.add(node, "SEC001 hardcoded-secret", "high", message, hint)

    def _check_eval(self, node: ast.Call, name: str) -> None:
        literal = bool(node.args) and isinstance(node.args[0], ast.Constant)
        message = f"`{name.rsplit('.', 1)[-1]}()` runs arbitrary code" + (" (literal argument)" if literal else "")
        hint = "use ast.literal_eval for data, or an explicit dispatch table for behaviour"
        self.add(node, "SEC002 eval-exec", "medium" if literal else "high", message, hint)

    def _check_shell(self, node: ast.Call, name: str) -> None:
        if name in SHELL_OPTIONAL and not _is_true(_keyword(node, "shell")):
            return
        literal = bool(node.args) and isinstance(node.args[0], ast.Constant)
        how = "with shell=True" if name in SHELL_OPTIONAL else "through the shell"
        message = f"`{name}()` runs a command {how}" + ("" if literal else " built at run time (injection risk)")
        hint = "pass an argument list to subprocess.run(...) without shell=True; use shlex.quote if unavoidable"
        self.add(node, "SEC003 shell-command", "medium" if literal else "high", message, hint)

    def _check_deserialize(self, node: ast.Call, name: str) -> None:
        if name in {"yaml.load", "yaml.load_all"}:
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is not None and self.dotted(loader).rsplit(".", 1)[-1] in SAFE_YAML_LOADERS:
                return
        message = f"`{name}()` can execute code hidden in untrusted input"
        hint = "use json, or yaml.safe_load; never unpickle data you did not produce"
        self.add(node, "SEC004 unsafe-deserialization", "high", message, hint)

    def _check_execute(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTE_METHODS and node.args):
            return
        query = node.args[0]
        if dynamic_string_text(query) is None:
            return
        self.covered.update(id(child) for child in ast.walk(query))
        message = f"SQL passed to `.{node.func.attr}()` is built from strings (SQL injection)"
        self.add(node, "SEC005 sql-injection", "high", message, "use query parameters: execute(sql, params)")

    def _check_sql_building(self, node: ast.expr) -> None:
        text = dynamic_string_text(node)
        if text is None or not SQL_START.match(text):
            return
        self.covered.update(id(child) for child in ast.walk(node))
        message = "SQL statement built by string formatting (SQL injection risk)"
        self.add(node, "SEC005 sql-injection", "medium", message, "build the statement with placeholders and params")
