#!/usr/bin/env python3
"""Drives messages through the official `anthropic` SDK and prints what the client saw
as JSON: the text, the usage and (streamed) the event types, or the error (status, body,
headers), or an exception the SDK raised (e.g. a stream it could not parse).

One request from the command line prints one object; `--jobs FILE` (`-` for stdin) runs
a JSON list of requests in this one process — each an object with `base_url` and
optionally `model`, `prompt`, `stream`, `headers`, `tools` (true: a conversation with one
tool round already done, offering the `weather` tool) — and prints a list of results in the
same order. The e2e tests use `--jobs`: the SDK import costs a second or more per process.
"""
import argparse
import json
import sys

import anthropic


WEATHER = {"name": "weather", "description": "The weather in a city now.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def tool_conversation(prompt):
    """A conversation that already had one tool round, offering the tool again."""
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_paris",
                                           "name": "weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_paris", "content": "12 C, cloudy"},
            {"type": "text", "text": prompt}]},
    ]


def summary(msg):
    """What the client saw of a whole message."""
    return {"text": "".join(b.text for b in msg.content if b.type == "text"),
            "usage": msg.usage.model_dump(),
            "tool_uses": [{"id": b.id, "name": b.name, "input": b.input}
                          for b in msg.content if b.type == "tool_use"],
            "stop_reason": msg.stop_reason}


def run(base_url, model="claude-sonnet-4-5", prompt="Say hello.", stream=False, headers=None,
        tools=False):
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", max_retries=0,
                                 default_headers=headers or {}, timeout=20)
    kwargs = {"model": model, "max_tokens": 64,
              "messages": [{"role": "user", "content": prompt}]}
    if tools:
        kwargs.update(system="You answer with tools.", tools=[WEATHER],
                      messages=tool_conversation(prompt))
    try:
        if stream:
            events = []
            with client.messages.stream(**kwargs) as s:
                for event in s:
                    events.append(event.type)
                final = s.get_final_message()
            return {**summary(final), "events": events}
        return summary(client.messages.create(**kwargs))
    except anthropic.APIStatusError as e:
        return {"error": {"status": e.status_code, "body": e.body,
                          "headers": dict(e.response.headers)}}
    except Exception as e:  # noqa: BLE001 — the test reports whatever the SDK raised
        return {"exception": f"{type(e).__name__}: {e}"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", help="a JSON list of requests (file, or - for stdin)")
    p.add_argument("--base-url")
    p.add_argument("--model", default="claude-sonnet-4-5")
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--header", action="append", default=[], help="name=value")
    args = p.parse_args()
    if args.jobs:
        with (sys.stdin if args.jobs == "-" else open(args.jobs)) as f:
            jobs = json.load(f)
        json.dump([run(**job) for job in jobs], sys.stdout)
        return
    if not args.base_url:
        p.error("--base-url or --jobs is required")
    json.dump(run(args.base_url, args.model, args.prompt, args.stream,
                  dict(h.split("=", 1) for h in args.header)), sys.stdout)


if __name__ == "__main__":
    main()
