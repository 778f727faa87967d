#!/usr/bin/env python3
"""An AI reviewer client for the control plane, written with the official Python MCP SDK.

It stands in for a reviewing model: the decisions are scripted by the
arguments, but every call goes through the real Streamable HTTP transport
of `pip install mcp` to the control plane's reviewer endpoint.

Checks, in order: a request without the bearer token is refused (401); the
handshake and the five tools; `list_pending_approvals` shows the three
requests named by the arguments with the right `can_approve`; a decision
without a reason is refused; the `ai_review` request is approved; the
`human` request cannot be approved (`tier_forbidden`) but can be denied;
the third request is escalated to the human queue and then cannot be
approved by the reviewer any more.

Prints one JSON summary line on stdout and exits 0 when every check passes;
exits 1 with a one-line reason on stderr otherwise.

    python3 control-plane/tests/ai_reviewer.py --url http://127.0.0.1:PORT/mcp \
        --token-file reviewer.token --approve 'echo review-ai ok' \
        --human 'echo review-human' --escalate 'echo review-ai escalate'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
import urllib.error
import urllib.request
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, report, result_text  # noqa: E402

TOOLS = {
    "list_pending_approvals",
    "get_approval",
    "approve_request",
    "deny_request",
    "escalate_to_human",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the reviewer endpoint, http://…/mcp")
    parser.add_argument("--token-file", required=True, help="file holding the bearer token")
    parser.add_argument("--approve", required=True, help="command of the ai_review request to approve")
    parser.add_argument("--human", required=True, help="command of the human request (try, then deny)")
    parser.add_argument("--escalate", required=True, help="command of the ai_review request to escalate")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    return parser.parse_args(argv)


def unauthenticated_status(url: str) -> int:
    """POSTs an initialize without a token; returns the HTTP status."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "intruder", "version": "0"},
            },
        }
    ).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def call(session: ClientSession, tool: str, **arguments: Any) -> tuple[bool, Any, str]:
    """(is_error, structured content, text) of one tool call."""
    result = await session.call_tool(tool, arguments)
    return bool(result.is_error), result.structured_content, result_text(result)


async def run(args: argparse.Namespace, token: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    status = unauthenticated_status(args.url)
    check(status == 401, f"a request without the token got HTTP {status}, expected 401")
    summary["unauthenticated_status"] = status

    headers = {"Authorization": f"Bearer {token}"}
    with anyio.fail_after(args.timeout):
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(args.url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    init = await session.initialize()
                    check(
                        init.server_info.name == "infrabroker-approvals",
                        f"server name is {init.server_info.name!r}",
                    )
                    names = {tool.name for tool in (await session.list_tools()).tools}
                    check(TOOLS <= names, f"tools/list is {sorted(names)}")

                    failed, listed, text = await call(session, "list_pending_approvals")
                    check(not failed, f"list_pending_approvals failed: {text}")
                    by_command = {a["command"]: a for a in listed["approvals"]}
                    ids = {}
                    for role, command, can in (
                        ("approve", args.approve, True),
                        ("human", args.human, False),
                        ("escalate", args.escalate, True),
                    ):
                        check(command in by_command, f"{command!r} not pending: {sorted(by_command)}")
                        entry = by_command[command]
                        check(
                            entry["can_approve"] is can,
                            f"{command!r}: can_approve is {entry['can_approve']}, tier {entry['tier']}",
                        )
                        ids[role] = entry["id"]
                    summary["ids"] = ids

                    failed, shown, text = await call(session, "get_approval", approval_id=ids["approve"])
                    check(not failed and shown["command"] == args.approve, f"get_approval: {text}")

                    failed, _, text = await call(
                        session, "approve_request", approval_id=ids["approve"], reason="   "
                    )
                    check(failed and "reason_required" in text, f"a blank reason was accepted: {text}")

                    failed, approved, text = await call(
                        session,
                        "approve_request",
                        approval_id=ids["approve"],
                        reason="read-only echo of a fixed string; safe to run",
                    )
                    check(not failed and approved["status"] == "approved", f"approve failed: {text}")
                    check(approved["decided_via"] == "ai_reviewer", f"decided_via: {approved}")

                    failed, _, text = await call(
                        session, "approve_request", approval_id=ids["human"], reason="looks fine to me"
                    )
                    check(failed and "tier_forbidden" in text, f"a human request was approved: {text}")
                    summary["human_refusal"] = text

                    failed, denied, text = await call(
                        session,
                        "deny_request",
                        approval_id=ids["human"],
                        reason="reserved for humans and no ticket given; denying",
                    )
                    check(not failed and denied["status"] == "denied", f"deny failed: {text}")

                    failed, escalated, text = await call(
                        session,
                        "escalate_to_human",
                        approval_id=ids["escalate"],
                        reason="unsure about the blast radius; a human should decide",
                    )
                    check(
                        not failed and escalated["tier"] == "human" and escalated["escalated"],
                        f"escalation failed: {text}",
                    )
                    failed, _, text = await call(
                        session, "approve_request", approval_id=ids["escalate"], reason="changed my mind"
                    )
                    check(failed and "tier_forbidden" in text, f"escalated request approved by AI: {text}")
    return summary


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    return report("ai_reviewer", args.timeout, lambda: run(args, token))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
