#!/usr/bin/env python3
"""Drives `broker mcp-http` with the official Python MCP SDK (`pip install mcp`).

An independent client from another ecosystem doing what a remote MCP client
does: its first request is refused with 401, it follows the
`WWW-Authenticate` challenge to the protected-resource metadata (RFC 9728),
discovers the authorization server, gets a token with the client_credentials
grant (RFC 8707 resource indicator) through the SDK's own OAuth provider,
then calls `ssh_list_servers` and `ssh_execute` over Streamable HTTP.

Prints one JSON summary line on stdout and exits 0 when every check passes;
exits 1 with a one-line reason on stderr otherwise.

    python3 broker/tests/mcp_http_client.py --url http://127.0.0.1:8080/mcp \\
        --issuer http://127.0.0.1:4444 --client-id alice --client-secret alice-secret \\
        --expect-hosts host-a --run host-a 'echo hi' 'hi\\n' --refused host-b
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, decode_escapes, report, result_text  # noqa: E402


class MemoryStorage:
    """Token storage for one run: nothing is written anywhere."""

    def __init__(self) -> None:
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):  # noqa: ANN201 - SDK protocol
        return self.tokens

    async def set_tokens(self, tokens) -> None:  # noqa: ANN001
        self.tokens = tokens

    async def get_client_info(self):  # noqa: ANN201
        return self.client_info

    async def set_client_info(self, client_info) -> None:  # noqa: ANN001
        self.client_info = client_info


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the broker's MCP endpoint")
    parser.add_argument("--issuer", required=True, help="issuer the client is registered with")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--scope", default="mcp")
    parser.add_argument(
        "--expect-hosts", default="", help="comma-separated hosts ssh_list_servers must return, exactly"
    )
    parser.add_argument(
        "--run",
        nargs=3,
        action="append",
        default=[],
        metavar=("HOST", "COMMAND", "STDOUT"),
        help="run COMMAND on HOST and expect STDOUT (escapes \\n \\t \\\\ decoded) and exit 0",
    )
    parser.add_argument(
        "--refused",
        action="append",
        default=[],
        metavar="HOST",
        help="ssh_execute on HOST must fail with host_unknown",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    auth = ClientCredentialsOAuthProvider(
        server_url=args.url,
        storage=MemoryStorage(),
        client_id=args.client_id,
        client_secret=args.client_secret,
        scope=args.scope,
        issuer=args.issuer,
    )
    summary: dict[str, Any] = {"user": args.client_id}
    with anyio.fail_after(args.timeout):
        async with create_mcp_http_client(auth=auth) as http:
            async with streamable_http_client(args.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    check(init.server_info.name == "infrabroker", f"server name {init.server_info.name!r}")
                    summary["protocol_version"] = str(init.protocol_version)
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    check({"ssh_list_servers", "ssh_execute"} <= tools, f"tools/list: {sorted(tools)}")

                    listed = await session.call_tool("ssh_list_servers", {})
                    check(not listed.is_error, f"ssh_list_servers failed: {result_text(listed)}")
                    names = sorted(s.get("name") for s in (listed.structured_content or {}).get("servers", []))
                    summary["servers"] = names
                    want = sorted(h for h in args.expect_hosts.split(",") if h)
                    check(names == want, f"ssh_list_servers gave {names}, expected {want}")

                    summary["serials"] = []
                    for host, command, expected in args.run:
                        expected = decode_escapes(expected)
                        done = await session.call_tool("ssh_execute", {"host": host, "command": command})
                        check(not done.is_error, f"ssh_execute on {host} failed: {result_text(done)}")
                        out = done.structured_content or {}
                        check(out.get("stdout") == expected, f"{host}: stdout {out.get('stdout')!r}, expected {expected!r}")
                        check(out.get("exit_code") == 0, f"{host}: exit_code {out.get('exit_code')!r}")
                        summary["serials"].append(out.get("serial"))

                    summary["refused"] = {}
                    for host in args.refused:
                        refused = await session.call_tool("ssh_execute", {"host": host, "command": "id"})
                        text = result_text(refused)
                        check(refused.is_error, f"ssh_execute on {host} was not refused: {text!r}")
                        check("host_unknown" in text, f"{host}: refusal lacks host_unknown: {text!r}")
                        summary["refused"][host] = text
    return summary


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return report("mcp_http_client", args.timeout, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
