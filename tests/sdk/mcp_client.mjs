#!/usr/bin/env node
// Drives an MCP endpoint with the official TypeScript SDK client (1.x, Streamable
// HTTP), for the MCP gateway tests: the same jobs and results as mcp_client.py.
// Reads a JSON list of jobs on stdin and prints a JSON list of results, in order. A job:
//
//   {"url": "http://127.0.0.1:PORT/mcp",
//    "calls": [{"name": "weather__echo", "arguments": {"text": "hi"}}, ...],
//    "prompts": [{"name": "weather__greet", "arguments": {"who": "ann"}}, ...],
//    "resources": ["weather://info", ...], "token": "<jwt>", "answers": true}
//
// Its result: {"protocol_version", "server_name", "session_id", "tools": [names],
// "calls": [{"text", "is_error"} or {"error": {"code", "message"}}], "prompt_names",
// "got", "resource_uris", "read"}. With "answers" the client answers elicitations with
// {"answer": "yes to <message>"} and samplings with `model says <prompt>`. The session
// is ended with DELETE at the end. Packages: tests/sdk/package.json (npm ci).

import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const text = (result) =>
  (result.content ?? result.contents ?? [])
    .map((c) => c.text ?? "")
    .join("");
const failure = (e) => ({ error: { code: e.code ?? null, message: String(e.message ?? e) } });

async function attempt(list, f) {
  try {
    list.push(await f());
  } catch (e) {
    list.push(failure(e));
  }
}

async function run(job) {
  const capabilities = job.answers ? { elicitation: {}, sampling: {} } : {};
  const client = new Client({ name: "tollgate-test", version: "1.0.0" }, { capabilities });
  if (job.answers) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => ({
      action: "accept",
      content: { answer: `yes to ${request.params.message}` },
    }));
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
      role: "assistant",
      model: "test-model",
      content: { type: "text", text: `model says ${request.params.messages[0].content.text}` },
    }));
  }
  const headers = job.token ? { authorization: `Bearer ${job.token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(job.url), {
    requestInit: { headers },
  });
  await client.connect(transport);
  const out = {
    protocol_version: transport.protocolVersion ?? null,
    server_name: client.getServerVersion()?.name ?? null,
    session_id: transport.sessionId ?? null,
  };
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  out.calls = [];
  for (const c of job.calls ?? []) {
    await attempt(out.calls, async () => {
      const result = await client.callTool({ name: c.name, arguments: c.arguments ?? {} });
      return { text: text(result), is_error: Boolean(result.isError) };
    });
  }
  if (job.prompts) {
    out.prompt_names = (await client.listPrompts()).prompts.map((p) => p.name);
    out.got = [];
    for (const p of job.prompts) {
      await attempt(out.got, async () => {
        const result = await client.getPrompt({ name: p.name, arguments: p.arguments ?? {} });
        return { text: result.messages.map((m) => m.content.text ?? "").join("") };
      });
    }
  }
  if (job.resources) {
    out.resource_uris = (await client.listResources()).resources.map((r) => r.uri);
    out.read = [];
    for (const uri of job.resources) {
      await attempt(out.read, async () => ({ text: text(await client.readResource({ uri })) }));
    }
  }
  await transport.terminateSession();
  await client.close();
  return out;
}

const jobs = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const job of jobs) {
  results.push(await run(job));
}
console.log(JSON.stringify(results));
