#!/usr/bin/env python3
"""A target for the official MCP conformance suite (npm @modelcontextprotocol/conformance,
`conformance server --url ...`): an MCP server of the Python SDK 1.x (FastMCP) over
Streamable HTTP with the tools, resources and prompts the suite's server scenarios call
by name (test_simple_text, test://static-text, test_simple_prompt, ...), written from the
"Server Implementation Requirements" each scenario states. scripts/mcp-conformance runs
the suite against it directly and through tollgate.

It binds a loopback socket itself (port 0), prints `READY <port>` and serves until killed.
Run with .venv-mcp1/bin/python (scripts/install-test-deps makes it).
"""

import asyncio
import base64
import json
import socket

import uvicorn
from mcp import types
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.prompts.base import UserMessage

# A 1x1 red PNG and a tiny silent WAV, made here (no fixture files).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()


def wav() -> bytes:
    rate, samples = 8000, 80
    data = b"\x80" * samples
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += rate.to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


WAV_B64 = base64.b64encode(wav()).decode()

SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


class Server(FastMCP):
    async def list_tools(self) -> list[types.Tool]:
        tools = await super().list_tools()
        for tool in tools:  # FastMCP derives schemas from signatures; this one is given
            if tool.name == "json_schema_2020_12_tool":
                tool.inputSchema = SCHEMA_2020_12
        return tools


def build(host: str) -> Server:
    mcp = Server("tollgate-conformance-target", host=host)
    low = mcp._mcp_server  # handlers FastMCP does not wrap

    @mcp.tool(description="Returns simple text.")
    def test_simple_text() -> list[types.ContentBlock]:
        return [types.TextContent(type="text", text="This is a simple text response for testing.")]

    @mcp.tool(description="Returns an image.")
    def test_image_content() -> list[types.ContentBlock]:
        return [types.ImageContent(type="image", data=PNG_B64, mimeType="image/png")]

    @mcp.tool(description="Returns audio.")
    def test_audio_content() -> list[types.ContentBlock]:
        return [types.AudioContent(type="audio", data=WAV_B64, mimeType="audio/wav")]

    @mcp.tool(description="Returns an embedded resource.")
    def test_embedded_resource() -> list[types.ContentBlock]:
        return [
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://embedded-resource",
                    mimeType="text/plain",
                    text="This is an embedded resource content.",
                ),
            )
        ]

    @mcp.tool(description="Returns text, an image and a resource.")
    def test_multiple_content_types() -> list[types.ContentBlock]:
        return [
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG_B64, mimeType="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://mixed-content-resource",
                    mimeType="application/json",
                    text=json.dumps({"test": "data", "value": 123}),
                ),
            ),
        ]

    @mcp.tool(description="Logs three messages while it runs.")
    async def test_tool_with_logging(ctx: Context) -> str:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool(description="Always fails.")
    def test_error_handling() -> types.CallToolResult:
        return types.CallToolResult(
            isError=True,
            content=[
                types.TextContent(
                    type="text", text="This tool intentionally returns an error for testing"
                )
            ],
        )

    @mcp.tool(description="Reports progress 0, 50, 100 of 100.")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress, 100)
        return "Tool with progress executed successfully"

    @mcp.tool(description="Asks the client's LLM.")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        result = await ctx.session.create_message(
            messages=[
                types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=prompt)
                )
            ],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if isinstance(result.content, types.TextContent) else str(result.content)
        return f"LLM response: {text}"

    async def elicit(ctx: Context, message: str, schema: dict) -> types.ElicitResult:
        return await ctx.session.elicit(message, schema, related_request_id=ctx.request_id)

    @mcp.tool(description="Asks the user.")
    async def test_elicitation(message: str, ctx: Context) -> str:
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        result = await elicit(ctx, message, schema)
        return f"User response: action={result.action}, content={json.dumps(result.content)}"

    @mcp.tool(description="Asks the user, with defaults.")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {
                    "type": "string",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "default": True},
            },
        }
        result = await elicit(ctx, "Please review your information", schema)
        return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"

    @mcp.tool(description="Asks the user, with every kind of enum.")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        options = ["option1", "option2", "option3"]
        schema = {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": options},
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": options}},
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
        }
        result = await elicit(ctx, "Please choose", schema)
        return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"

    @mcp.tool(description="Tool with JSON Schema 2020-12 features")
    def json_schema_2020_12_tool(name: str = "", address: dict | None = None) -> str:
        return f"name={name}"

    @mcp.resource("test://static-text", name="static-text", description="Static text.", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", name="static-binary", description="Static PNG.", mime_type="image/png")
    def static_binary() -> bytes:
        return PNG

    @mcp.resource("test://watched-resource", name="watched-resource", description="Subscribable.", mime_type="text/plain")
    def watched() -> str:
        return "watched"

    @mcp.resource(
        "test://template/{id}/data", name="template", description="Templated data.", mime_type="application/json"
    )
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.prompt(description="A simple prompt.")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(description="A prompt with arguments.")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @mcp.prompt(description="A prompt with an embedded resource.")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        return [
            UserMessage(
                content=types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri=resourceUri, mimeType="text/plain", text="Embedded resource content for testing."
                    ),
                )
            ),
            UserMessage(content="Please process the embedded resource above."),
        ]

    @mcp.prompt(description="A prompt with an image.")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(content=types.ImageContent(type="image", data=PNG_B64, mimeType="image/png")),
            UserMessage(content="Please analyze the image above."),
        ]

    @mcp.completion()
    async def complete(ref, argument, context) -> types.Completion:
        values = [v for v in ("paris", "park", "party") if v.startswith(argument.value)]
        return types.Completion(values=values, total=len(values), hasMore=False)

    subscriptions: set[str] = set()

    @low.set_logging_level()
    async def set_level(level: types.LoggingLevel) -> None:
        return None

    @low.subscribe_resource()
    async def subscribe(uri) -> None:
        subscriptions.add(str(uri))

    @low.unsubscribe_resource()
    async def unsubscribe(uri) -> None:
        subscriptions.discard(str(uri))

    return mcp


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    # host=127.0.0.1: the SDK's DNS-rebinding protection (Host and Origin must be local).
    app = build("127.0.0.1").streamable_http_app()
    print(f"READY {port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
