#!/usr/bin/env python3
"""Drives `broker mcp-stdio` with the official Python MCP SDK (`pip install mcp`).

An independent client from another ecosystem: it checks the handshake, the
tool list and schemas, `ssh_list_servers`, one real `ssh_execute` (whose
structured result the SDK itself validates against the declared output
schema) and the error result for an unknown host.

Prints one JSON summary line on stdout and exits 0 when every check passes;
exits 1 with a one-line reason on stderr otherwise.

    python3 broker/tests/mcp_client.py --broker-bin target/debug/broker \
        --config broker.json --host web1 --command 'echo hi' --expect-stdout 'hi\n'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "testbed" / "python"))
from mcp_check import check, decode_escapes, report, result_text  # noqa: E402

UNKNOWN_HOST = "infrabroker-no-such-host"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-bin", required=True, help="path of the broker binary")
    parser.add_argument("--config", required=True, help="broker configuration file")
    parser.add_argument("--host", required=True, help="logical host to run the command on")
    parser.add_argument("--command", required=True, help="command to run")
    parser.add_argument(
        "--expect-stdout",
        required=True,
        help="exact expected stdout; the escapes \\n, \\t and \\\\ are decoded",
    )
    parser.add_argument("--expect-exit", type=int, default=0, help="expected exit code")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    args.expect_stdout = decode_escapes(args.expect_stdout)
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = StdioServerParameters(
        command=args.broker_bin, args=["mcp-stdio", "--config", args.config]
    )
    summary: dict[str, Any] = {}
    with anyio.fail_after(args.timeout):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                summary["protocol_version"] = str(init.protocol_version)
                summary["server"] = {
                    "name": init.server_info.name,
                    "version": init.server_info.version,
                }
                check(init.server_info.name == "infrabroker", f"server name is {init.server_info.name!r}")

                tools = {tool.name: tool for tool in (await session.list_tools()).tools}
                summary["tools"] = sorted(tools)
                for name in ("ssh_list_servers", "ssh_execute"):
                    check(name in tools, f"tools/list lacks {name}: {sorted(tools)}")
                    check(bool(tools[name].description), f"{name} has no description")
                properties = tools["ssh_execute"].input_schema.get("properties", {})
                for field in ("host", "command"):
                    check(field in properties, f"ssh_execute input schema lacks {field!r}")
                check(
                    tools["ssh_execute"].output_schema is not None,
                    "ssh_execute declares no output schema",
                )

                listed = await session.call_tool("ssh_list_servers", {})
                check(not listed.is_error, f"ssh_list_servers failed: {result_text(listed)}")
                servers = (listed.structured_content or {}).get("servers", [])
                names = [server.get("name") for server in servers]
                summary["servers"] = names
                check(args.host in names, f"{args.host!r} not among listed hosts {names}")

                executed = await session.call_tool(
                    "ssh_execute", {"host": args.host, "command": args.command}
                )
                check(not executed.is_error, f"ssh_execute failed: {result_text(executed)}")
                out = executed.structured_content or {}
                check(
                    out.get("stdout") == args.expect_stdout,
                    f"stdout is {out.get('stdout')!r}, expected {args.expect_stdout!r}",
                )
                check(
                    out.get("exit_code") == args.expect_exit,
                    f"exit_code is {out.get('exit_code')!r}, expected {args.expect_exit}",
                )
                check(isinstance(out.get("serial"), int), f"no certificate serial in {out}")
                check(bool(result_text(executed)), "ssh_execute returned no text content")
                for key in ("serial", "exit_code", "duration_ms", "stdout_truncated"):
                    summary[key] = out.get(key)

                unknown = await session.call_tool(
                    "ssh_execute", {"host": UNKNOWN_HOST, "command": "true"}
                )
                text = result_text(unknown)
                check(unknown.is_error, f"unknown host did not give an error result: {text!r}")
                check("host_unknown" in text, f"unknown host error lacks host_unknown: {text!r}")
                summary["unknown_host_error"] = text

                # A shell session: state persists between commands; it is
                # left open on purpose, so the broker must close it when this
                # client goes away.
                opened = await session.call_tool(
                    "ssh_session_open", {"host": args.host, "mode": "shell"}
                )
                check(not opened.is_error, f"ssh_session_open failed: {result_text(opened)}")
                session_id = (opened.structured_content or {}).get("session_id")
                check(bool(session_id), f"no session_id in {opened.structured_content}")
                for command, expected in (("cd /tmp", ""), ("pwd", "/tmp\n")):
                    ran = await session.call_tool(
                        "ssh_session_exec", {"session_id": session_id, "command": command}
                    )
                    check(not ran.is_error, f"ssh_session_exec {command!r}: {result_text(ran)}")
                    got = (ran.structured_content or {}).get("stdout")
                    check(got == expected, f"{command!r} printed {got!r}, expected {expected!r}")
                listed = await session.call_tool("ssh_session_list", {})
                ids = [s.get("session_id") for s in (listed.structured_content or {}).get("sessions", [])]
                check(session_id in ids, f"{session_id} not in ssh_session_list {ids}")
                summary["session_id"] = session_id
    return summary


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return report("mcp_client", args.timeout, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
