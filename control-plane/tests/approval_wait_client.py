#!/usr/bin/env python3
"""Drives `broker mcp-stdio` (pointed at a control plane) with the official Python MCP SDK.

It calls `ssh_execute` twice with a progress token. Each call waits for an
approval held by the control plane; every progress notification received
is appended to `--progress-file` as `<call number> <progress>` so the test
driving this script can decide only after progress was seen. The first call
must succeed with `--expect-stdout`; the second must come back as a tool
error naming `approval_denied` and the approval id.

Prints one JSON summary line on stdout and exits 0 when every check passes;
exits 1 with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


class CheckFailed(Exception):
    """A check on the broker's answers did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def result_text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-bin", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--command", required=True, help="command of both calls")
    parser.add_argument("--expect-stdout", required=True, help="stdout of the approved call")
    parser.add_argument("--progress-file", required=True)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    args.expect_stdout = args.expect_stdout.replace("\\n", "\n")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = StdioServerParameters(command=args.broker_bin, args=["mcp-stdio", "--config", args.config])
    summary: dict[str, Any] = {"progress": {}}

    def progress_for(call: int):
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            summary["progress"].setdefault(str(call), []).append(message or "")
            with open(args.progress_file, "a", encoding="utf-8") as handle:
                handle.write(f"{call} {progress}\n")

        return on_progress

    with anyio.fail_after(args.timeout):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                arguments = {"host": args.host, "command": args.command}

                first = await session.call_tool("ssh_execute", arguments, progress_callback=progress_for(1))
                check(not first.is_error, f"the approved call failed: {result_text(first)}")
                out = first.structured_content or {}
                check(out.get("stdout") == args.expect_stdout, f"stdout is {out.get('stdout')!r}")
                check(summary["progress"].get("1"), "no progress while the first call waited")

                second = await session.call_tool("ssh_execute", arguments, progress_callback=progress_for(2))
                text = result_text(second)
                check(second.is_error, f"the denied call did not fail: {text}")
                check("approval_denied" in text, f"no approval_denied in {text!r}")
                match = re.search(r"\b[0-9a-f]{32}\b", text)
                check(match is not None, f"no approval id in {text!r}")
                check(summary["progress"].get("2"), "no progress while the second call waited")
                summary["denied_id"] = match.group(0)
                summary["denied_text"] = text
    return summary


def first_leaf(error: BaseException) -> BaseException:
    """Task groups wrap failures in exception groups; report the real one."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        summary = anyio.run(run, args)
    except BaseException as error:  # noqa: BLE001 - every failure is reported the same way
        leaf = first_leaf(error)
        if isinstance(leaf, KeyboardInterrupt):
            raise
        if isinstance(leaf, TimeoutError):
            reason = f"no complete answer within {args.timeout:g} s"
        elif isinstance(leaf, CheckFailed):
            reason = str(leaf)
        else:
            reason = f"{type(leaf).__name__}: {leaf}"
        print(f"approval_wait_client: FAIL: {reason}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, **summary}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
