#!/usr/bin/env python3
"""Answers a `user_confirm` request in the conversation with the official Python MCP SDK.

It starts `broker mcp-stdio` (pointed at a control plane whose tier rules
route the command to `user_confirm`) and calls `ssh_execute` once. The
broker asks the user to confirm; this client's `elicitation_callback` is
the user:

- `--protocol legacy`: the initialize handshake (2025-11-25), so the broker
  asks with `elicitation/create` while the call waits;
- `--protocol 2026-07-28`: no handshake; the broker answers the call with
  an `InputRequiredResult` and the SDK retries it with the answer;
- `--answer accept|decline|cancel` answers at once; `late` answers accept
  only after `--late-seconds` (past the question's expiry); `none` gives the
  client no callback at all (no elicitation capability); `tamper` (input
  requests only) drives the rounds by hand: it first retries with the
  answer but another command, then with the call as it was.

Prints one JSON summary line on stdout (the result's text, whether it is an
error, the negotiated protocol, every message the user was shown) and exits
0; exits 1 with a one-line reason on stderr when the SDK itself fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import StdioServerParameters, types
from mcp.client.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, report, result_text  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-bin", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--protocol", choices=["legacy", "2026-07-28"], required=True)
    parser.add_argument("--answer", choices=["accept", "decline", "cancel", "late", "none", "tamper"], required=True)
    parser.add_argument("--late-seconds", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = StdioServerParameters(command=args.broker_bin, args=["mcp-stdio", "--config", args.config])
    summary: dict[str, Any] = {"messages": [], "schemas": []}

    async def answer(_context: Any, request: types.ElicitRequestParams) -> types.ElicitResult:
        summary["messages"].append(request.message)
        summary["schemas"].append(request.requested_schema)
        if args.answer == "late":
            await anyio.sleep(args.late_seconds)
            return types.ElicitResult(action="accept", content={"confirm": True})
        if args.answer == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action=args.answer)

    callback = None if args.answer == "none" else answer
    with anyio.fail_after(args.timeout):
        async with Client(params, mode=args.protocol, elicitation_callback=callback) as client:
            summary["protocol_version"] = client.session.protocol_version
            call = {"host": args.host, "command": args.command}
            if args.answer == "tamper":
                result = await tamper(client, call, summary)
            else:
                result = await client.call_tool("ssh_execute", call)
            summary["is_error"] = bool(result.is_error)
            summary["text"] = result_text(result)
            summary["structured"] = result.structured_content
    return summary


async def tamper(client: Client, call: dict[str, Any], summary: dict[str, Any]) -> Any:
    """Answers an input request by hand: a retry whose arguments differ is
    refused; the faithful retry still runs the call."""
    first = await client.session.call_tool("ssh_execute", call, allow_input_required=True)
    check(isinstance(first, types.InputRequiredResult), f"expected an input request, got {first!r}")
    requests = first.input_requests or {}
    check(list(requests) == ["confirm"], f"input requests {list(requests)}")
    summary["messages"].append(requests["confirm"].params.message)
    summary["schemas"].append(requests["confirm"].params.requested_schema)
    accept = {"confirm": types.ElicitResult(action="accept", content={"confirm": True})}
    other = {**call, "command": call["command"] + "-tampered"}
    tampered = await client.session.call_tool(
        "ssh_execute", other, input_responses=accept, request_state=first.request_state
    )
    summary["tampered_text"] = result_text(tampered)
    summary["tampered_is_error"] = bool(tampered.is_error)
    return await client.session.call_tool(
        "ssh_execute", call, input_responses=accept, request_state=first.request_state
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return report("confirm_client", args.timeout, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
