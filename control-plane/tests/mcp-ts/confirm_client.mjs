// Answers a `user_confirm` request in the conversation with the official
// TypeScript MCP SDK (@modelcontextprotocol/sdk).
//
// Starts `broker mcp-stdio` (pointed at a control plane whose tier rules
// route the command to `user_confirm`), declares the elicitation capability
// (form mode), calls `ssh_execute` once and answers the broker's
// `elicitation/create` with `--answer accept|decline|cancel`.
//
// Prints one JSON summary line on stdout (the result's text, whether it is
// an error, the negotiated protocol, every message shown) and exits 0; exits
// 1 with a one-line reason on stderr when the SDK itself fails.
//
//   node confirm_client.mjs --broker-bin target/debug/broker --config broker.json \
//     --host web --command 'echo confirm-ts' --answer accept

import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const { values: args } = parseArgs({
  options: {
    "broker-bin": { type: "string" },
    config: { type: "string" },
    host: { type: "string" },
    command: { type: "string" },
    answer: { type: "string" },
    timeout: { type: "string", default: "60" },
  },
});

async function run() {
  const summary = { messages: [], schemas: [] };
  const transport = new StdioClientTransport({
    command: args["broker-bin"],
    args: ["mcp-stdio", "--config", args.config],
    stderr: "inherit",
  });
  const client = new Client(
    { name: "infrabroker-confirm-test", version: "1.0.0" },
    { capabilities: { elicitation: { form: {} } } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    summary.messages.push(request.params.message);
    summary.schemas.push(request.params.requestedSchema);
    if (args.answer === "accept") {
      return { action: "accept", content: { confirm: true } };
    }
    return { action: args.answer };
  });
  await client.connect(transport);
  summary.protocol_version = transport.protocolVersion ?? null;
  const timeout = Number(args.timeout) * 1000;
  const result = await client.callTool(
    { name: "ssh_execute", arguments: { host: args.host, command: args.command } },
    undefined,
    { timeout, resetTimeoutOnProgress: true },
  );
  summary.is_error = Boolean(result.isError);
  summary.text = result.content.map((block) => block.text ?? "").join("\n");
  summary.structured = result.structuredContent ?? null;
  await client.close();
  return summary;
}

const guard = setTimeout(() => {
  console.error(`confirm_client.mjs: FAIL: no complete answer within ${args.timeout} s`);
  process.exit(1);
}, Number(args.timeout) * 1000 + 5000);

run().then(
  (summary) => {
    clearTimeout(guard);
    console.log(JSON.stringify({ ok: true, ...summary }));
    process.exit(0);
  },
  (error) => {
    console.error(`confirm_client.mjs: FAIL: ${error?.message ?? error}`);
    process.exit(1);
  },
);
