"""The lab's PowerShell syntax: tokens, parameters and the two ways a statement fails
(not in the vocabulary, or a PowerShell-style error). The vocabulary itself is in
``powershell.py``."""

from __future__ import annotations

import re
from typing import Any

Token = tuple[str, str]

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<pipe>\|)|(?P<comma>,)|(?P<eq>=(?=\s|'))|(?P<word>[^\s'|,"]+))"""
)


class NotUnderstood(Exception):
    pass


class PsError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def tokenize(line: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(line):
        if line[pos:].strip() == "":
            break
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            raise NotUnderstood(line)
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "str":
            text = text[1:-1].replace("''", "'")
        tokens.append((kind, text))
        pos = m.end()
    return tokens


def parse_args(
    tokens: list[Token],
    *,
    values: set[str] = frozenset(),  # type: ignore[assignment]
    switches: set[str] = frozenset(),  # type: ignore[assignment]
    lists: set[str] = frozenset(),  # type: ignore[assignment]
    positionals: int = 0,
    bare_value: bool = False,
) -> dict[str, Any]:
    """Parameters by lower-case name; ``_`` holds positional words. Raises NotUnderstood."""
    out: dict[str, Any] = {"_": []}
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        key = text.lower()
        if kind == "word" and key in switches:
            out[key] = True
            i += 1
        elif kind == "word" and key in values:
            if i + 1 >= len(tokens):
                raise NotUnderstood(text)
            nkind, ntext = tokens[i + 1]
            if nkind != "str" and not (bare_value and nkind == "word"):
                raise NotUnderstood(text)
            out[key] = ntext
            i += 2
        elif kind == "word" and key in lists:
            items: list[str] = []
            i += 1
            while i < len(tokens) and tokens[i][0] == "str":
                items.append(tokens[i][1])
                i += 1
                if i < len(tokens) and tokens[i][0] == "comma":
                    i += 1
                else:
                    break
            if not items:
                raise NotUnderstood(text)
            out[key] = items
        elif kind == "word" and not text.startswith("-") and len(out["_"]) < positionals:
            out["_"].append(key)
            i += 1
        else:
            raise NotUnderstood(text)
    return out


def need(args: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in args:
            raise NotUnderstood(name)


def choice(value: str, allowed: tuple[str, ...], cmdlet: str, param: str) -> str:
    for option in allowed:
        if option.lower() == value.lower():
            return option
    raise PsError(
        f"{cmdlet} : Cannot bind parameter '{param}'. Cannot convert value \"{value}\" "
        f"(valid values: {', '.join(allowed)})."
    )
