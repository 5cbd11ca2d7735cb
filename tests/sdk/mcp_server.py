#!/usr/bin/env python3
"""An MCP server of the official Python SDK (1.x FastMCP or 2.x MCPServer) over
Streamable HTTP, for the MCP gateway tests. It binds a loopback socket itself (port 0,
so no port race, unless `--port` asks for the port of a server it replaces), prints
`READY <port>` and serves until killed.

Tools: `echo(text)` answers `<name>:<text>` (the same tool name on every server, so the
gateway's prefixes are what tells them apart) and `<name>_only()` answers `<name>`.
Prompt: `greet(who)`, one user message `<name> greets <who>`. Resource: `<name>://info`,
the text `about <name>`. With `--ask-back` (sdk 1 only), two tools ask the client back on the call's SSE
stream: `ask(question, standalone=false)` elicits `{"answer": string}` (on the client's
GET stream when `standalone`) and answers `<name> heard <answer>` (or `<name> got
<action>`); `sample(prompt)` requests a sampling and answers `<name> sampled <text>`;
`announce()` sends `notifications/tools/list_changed` on the GET stream. With
`--ask-back` on sdk 2, `ask(question)` elicits the answer through a resolver (an
`InputRequiredResult` in 2026-07-28, which the client answers by calling again) and
`announce()` publishes a tools list change to every `subscriptions/listen` stream.

Run with the venv of the SDK chosen: .venv-mcp1/bin/python for --sdk 1,
.venv-mcp2/bin/python for --sdk 2 (scripts/install-test-deps makes both).
"""

import argparse
import socket

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdk", choices=["1", "2"], required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--ask-back", action="store_true", help="the ask tools (sdk 1: and sample)")
    parser.add_argument(
        "--require-header",
        help="NAME=VALUE: every request without it gets 401; any Authorization header gets 400",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0,
        help="wait this long before handling each request (a remote server's wall time, no CPU)",
    )
    args = parser.parse_args()
    name = args.name

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    # TCP, and without it a keep-alive client waits out a delayed ACK (~40 ms) between the
    # response's header and body writes.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    port = sock.getsockname()[1]

    if args.sdk == "1":
        from mcp.server.fastmcp import FastMCP

        server = FastMCP(name, instructions=f"Tools of {name}.", json_response=args.json_response)
    else:
        from mcp.server.mcpserver import MCPServer

        server = MCPServer(name, instructions=f"Tools of {name}.")

    @server.tool()
    def echo(text: str) -> str:
        """Echoes the text, prefixed with the server's name."""
        return f"{name}:{text}"

    @server.tool(name=f"{name}_only")
    def only() -> str:
        """Answers the server's name."""
        return name

    @server.prompt()
    def greet(who: str) -> str:
        """A greeting from the server."""
        return f"{name} greets {who}"

    @server.resource(f"{name}://info")
    def info() -> str:
        """About the server."""
        return f"about {name}"

    if args.sdk == "1":
        if args.ask_back:
            add_client_requests(server, name)
        app = server.streamable_http_app()
    else:
        if args.ask_back:
            add_resolved_requests(server, name)
        app = server.streamable_http_app(json_response=args.json_response, host="127.0.0.1")

    if args.require_header:
        app = HeaderCheck(app, *args.require_header.split("=", 1))
    if args.latency_ms > 0:
        app = Latency(app, args.latency_ms / 1000)

    print(f"READY {port}", flush=True)
    # The app's lifespan runs the session manager.
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def add_resolved_requests(server, name: str) -> None:
    """sdk 2: `ask(question)` elicits `{"answer": string}` through a resolver (in
    2026-07-28 an `InputRequiredResult` the client answers by calling again; in the
    handshake era a request on the call's stream) and answers `<name> heard <answer>`;
    `announce()` publishes a tools list change to `subscriptions/listen` streams."""
    from typing import Annotated

    from pydantic import BaseModel

    from mcp.server.mcpserver import Context, Elicit, Resolve

    class Answer(BaseModel):
        answer: str

    def ask_user(question: str) -> Elicit[Answer]:
        return Elicit(question, Answer)

    @server.tool()
    async def ask(question: str, reply: Annotated[Answer, Resolve(ask_user)]) -> str:
        """Asks the user the question and says what they answered."""
        return f"{name} heard {reply.answer}"

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Tells listening clients the tool list changed."""
        await ctx.notify_tools_changed()
        return f"{name} announced"


class HeaderCheck:
    """ASGI middleware: 401 without header `name: value`, 400 with any Authorization (a
    gateway must send its own credentials for this server, never its client's token)."""

    def __init__(self, app, name: str, value: str):
        self.app, self.name, self.value = app, name.lower().encode(), value.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            status = 400 if b"authorization" in headers else 401 if headers.get(self.name) != self.value else 0
            if status:
                await send({"type": "http.response.start", "status": status, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


class Latency:
    """ASGI middleware: sleeps before each HTTP request, as a server far away or one
    waiting on its own backend would take wall time without using the CPU."""

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            import asyncio

            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def add_client_requests(server, name: str) -> None:
    """The 1.x tools that send the client requests of their own (elicitation, sampling)."""
    from mcp import types
    from mcp.server.fastmcp import Context

    @server.tool()
    async def ask(question: str, ctx: Context, standalone: bool = False) -> str:
        """Asks the user a question (on the client's GET stream when `standalone`)."""
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        related = None if standalone else ctx.request_id
        result = await ctx.session.elicit(question, schema, related_request_id=related)
        if result.action != "accept":
            return f"{name} got {result.action}"
        return f"{name} heard {result.content['answer']}"

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Tells the client (on its GET stream) that the tool list changed."""
        await ctx.session.send_tool_list_changed()
        return f"{name} announced"

    @server.tool()
    async def sample(prompt: str, ctx: Context) -> str:
        """Asks the client's model."""
        message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
        result = await ctx.session.create_message(
            messages=[message], max_tokens=50, related_request_id=ctx.request_id
        )
        return f"{name} sampled {result.content.text}"


if __name__ == "__main__":
    main()
