#!/usr/bin/env python3
"""Approves one pending request as the AI reviewer, through the official
Python MCP SDK over Streamable HTTP (the tests' stand-in for a reviewing
model that says yes).

    python3 control-plane/tests/approve_one.py --url http://127.0.0.1:PORT/mcp \
        --token-file reviewer.token --id APPROVAL_ID

Prints one JSON summary line and exits 0 when the approval was granted;
exits 1 with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, report, result_text  # noqa: E402


async def run(args: argparse.Namespace, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    with anyio.fail_after(args.timeout):
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(args.url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    result = await session.call_tool(
                        "approve_request",
                        {"approval_id": args.id, "reason": "reviewed: harmless"},
                    )
                    check(not result.is_error, f"approve_request failed: {result_text(result)}")
                    return {"approved": args.id}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    return report("approve_one", args.timeout, lambda: run(args, token))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
