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
import re
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, report, result_text  # noqa: E402


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


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return report("approval_wait_client", args.timeout, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
