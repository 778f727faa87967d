"""Shared plumbing of the Python MCP test clients (broker and control plane).

Each client script does its own checks; this module gives them one way to
fail a check, read a tool result's text, decode `\\n`-style escapes from the
command line, and report the outcome: one JSON summary line on stdout and
exit 0, or one `NAME: FAIL: reason` line on stderr and exit 1.

Scripts import it with
`sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))`.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Awaitable, Callable

import anyio


class CheckFailed(Exception):
    """A check on the server's answers did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def result_text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def decode_escapes(text: str) -> str:
    """`\\n`, `\\t` and `\\\\` only: other text, non-ASCII included, stays as given."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def first_leaf(error: BaseException) -> BaseException:
    """Task groups wrap failures in exception groups; report the real one."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def report(name: str, timeout: float, run: Callable[[], Awaitable[dict[str, Any]]]) -> int:
    """Runs `run` under anyio and reports its summary or its first failure."""
    try:
        summary = anyio.run(run)
    except BaseException as error:  # noqa: BLE001 - every failure is reported the same way
        leaf = first_leaf(error)
        if isinstance(leaf, KeyboardInterrupt):
            raise
        if isinstance(leaf, TimeoutError):
            reason = f"no complete answer within {timeout:g} s"
        elif isinstance(leaf, CheckFailed):
            reason = str(leaf)
        else:
            reason = f"{type(leaf).__name__}: {leaf}"
        print(f"{name}: FAIL: {reason}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, **summary}, sort_keys=True))
    return 0
