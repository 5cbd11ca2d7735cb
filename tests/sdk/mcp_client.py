#!/usr/bin/env python3
"""Drives an MCP endpoint with the official Python SDK client, for the MCP gateway
tests. Reads a JSON list of jobs (`--jobs -`: stdin) and prints a JSON list of results,
in order. A job:

    {"sdk": "1" | "2", "url": "http://127.0.0.1:PORT/mcp",
     "calls": [{"name": "weather__echo", "arguments": {"text": "hi"}}, ...],
     "prompts": [{"name": "weather__greet", "arguments": {"who": "ann"}}, ...],
     "resources": ["weather://info", ...],
     "token": "<jwt>", "answers": true}

With "token", every request carries `Authorization: Bearer <jwt>`. With "answers",
the client answers the server's requests: an elicitation with `{"answer": "yes to
<message>"}`, a sampling with the text `model says <prompt>` (sdk 1); the result then has
"notifications": the methods of the server notifications it got, in order (it waits
half a second after its last call for late ones).

Its result: {"protocol_version", "server_name", "session_id" (sdk 1), "tools": [names],
"calls": [{"text", "is_error"} or {"error": {"code", "message"}}]}, and with "prompts":
"prompt_names": [names] and "got": [{"text"} or {"error": ...}]; with "resources":
"resource_uris": [uris] and "read": [{"text"} or {"error": ...}]. sdk 1 uses
`ClientSession` over `streamable_http_client`; sdk 2 the high-level `Client` in its
default `auto` mode (it probes `server/discover` first, then falls back to initialize).
Run with the venv of the SDK chosen (.venv-mcp1 / .venv-mcp2).
"""

import argparse
import asyncio
import json
import sys


def call_result(result) -> dict:
    text = "".join(getattr(c, "text", "") for c in result.content)
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", False)
    return {"text": text, "is_error": bool(is_error)}


def error_result(error) -> dict:
    return {"error": {"code": error.error.code, "message": error.error.message}}


async def resources(out: dict, job: dict, session, error_type) -> None:
    """Lists the resources and reads each of the job's, through a 1.x session or 2.x client."""
    if "resources" not in job:
        return
    listed = await session.list_resources()
    out["resource_uris"] = [str(r.uri) for r in listed.resources]
    out["read"] = []
    for uri in job["resources"]:
        try:
            result = await session.read_resource(uri)
            out["read"].append({"text": "".join(getattr(c, "text", "") for c in result.contents)})
        except error_type as e:
            out["read"].append(error_result(e))


async def prompts(out: dict, job: dict, session, error_type) -> None:
    """Lists the prompts and gets each of the job's, through a 1.x session or 2.x client."""
    if "prompts" not in job:
        return
    listed = await session.list_prompts()
    out["prompt_names"] = [p.name for p in listed.prompts]
    out["got"] = []
    for p in job["prompts"]:
        try:
            result = await session.get_prompt(p["name"], p.get("arguments"))
            text = "".join(getattr(m.content, "text", "") for m in result.messages)
            out["got"].append({"text": text})
        except error_type as e:
            out["got"].append(error_result(e))


def answer_callbacks() -> dict:
    """ClientSession callbacks that answer elicitations and samplings (sdk 1)."""
    from mcp import types

    async def elicitation(context, params):
        return types.ElicitResult(action="accept", content={"answer": f"yes to {params.message}"})

    async def sampling(context, params):
        prompt = params.messages[0].content.text
        content = types.TextContent(type="text", text=f"model says {prompt}")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    return {"elicitation_callback": elicitation, "sampling_callback": sampling}


def notification_recorder(seen: list):
    """A ClientSession message handler that records server notifications' methods."""
    from mcp import types

    async def handler(message) -> None:
        if isinstance(message, types.ServerNotification):
            seen.append(message.root.method)

    return handler


async def run_sdk1(job: dict) -> dict:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import McpError

    out = {}
    http_client = None
    if "token" in job:
        import httpx

        headers = {"authorization": f"Bearer {job['token']}"}
        http_client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300))
    transport = streamable_http_client(job["url"], http_client=http_client)
    async with transport as (read, write, get_session_id):
        callbacks = answer_callbacks() if job.get("answers") else {}
        seen: list = []
        if job.get("answers"):
            callbacks["message_handler"] = notification_recorder(seen)
        async with ClientSession(read, write, **callbacks) as session:
            init = await session.initialize()
            out["protocol_version"] = init.protocolVersion
            out["server_name"] = init.serverInfo.name
            out["session_id"] = get_session_id()
            tools = await session.list_tools()
            out["tools"] = [t.name for t in tools.tools]
            out["calls"] = []
            for c in job.get("calls", []):
                try:
                    result = await session.call_tool(c["name"], c.get("arguments"))
                    out["calls"].append(call_result(result))
                except McpError as e:
                    out["calls"].append(error_result(e))
            await prompts(out, job, session, McpError)
            await resources(out, job, session, McpError)
            if job.get("answers"):
                await asyncio.sleep(0.5)
                out["notifications"] = seen
    return out


async def run_sdk2(job: dict) -> dict:
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    out = {}
    server = job["url"]
    if "token" in job:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {"authorization": f"Bearer {job['token']}"}
        http_client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
        server = streamable_http_client(job["url"], http_client=http_client)
    callbacks = {}
    if job.get("answers"):
        from mcp import types

        async def elicitation(context, params):
            return types.ElicitResult(action="accept", content={"answer": f"yes to {params.message}"})

        callbacks["elicitation_callback"] = elicitation
    async with Client(server, **callbacks) as client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name if client.server_info else None
        tools = await client.list_tools(cache_mode="bypass")
        out["tools"] = [t.name for t in tools.tools]
        out["calls"] = []
        for c in job.get("calls", []):
            try:
                result = await client.call_tool(c["name"], c.get("arguments"))
                out["calls"].append(call_result(result))
            except MCPError as e:
                out["calls"].append(error_result(e))
        await prompts(out, job, client, MCPError)
        await resources(out, job, client, MCPError)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", required=True, help="a JSON file of jobs, or - for stdin")
    args = parser.parse_args()
    text = sys.stdin.read() if args.jobs == "-" else open(args.jobs).read()
    results = []
    for job in json.loads(text):
        run = run_sdk1 if job["sdk"] == "1" else run_sdk2
        results.append(await run(job))
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
