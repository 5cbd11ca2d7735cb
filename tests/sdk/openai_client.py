#!/usr/bin/env python3
"""Drives chat completions through the official `openai` SDK and prints what the client
saw as JSON: the text, the usage, how many chunks carried usage, or the error (status,
body, headers), or an exception the SDK raised (e.g. a stream it could not parse).

One request from the command line prints one object; `--jobs FILE` (`-` for stdin) runs
a JSON list of requests in this one process — each an object with `base_url` and
optionally `model`, `prompt`, `stream`, `include_usage` (true / false; absent = not
sent), `headers`, `tools` (true: a conversation with one tool round already done,
offering the `weather` tool; the result then has `tool_calls` and `finish_reason`),
`turns` (a list of user prompts: one conversation, each reply appended to the history
before the next turn; the result is `{"turns": [{"text", "headers"}]}`), with
`response_headers` (names whose values each turn reports) and `echo_headers` (names
copied from each response onto the next request, as a client echoes a session token)
— and prints a list of results in the same order. The e2e tests use `--jobs`: the SDK
import costs a second or more per process.
"""
import argparse
import json
import sys

import openai


WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def tool_conversation(prompt):
    """A conversation that already had one tool round, offering the tool again."""
    return [
        {"role": "system", "content": "You answer with tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_paris", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_paris", "content": "12 C, cloudy"},
        {"role": "user", "content": prompt},
    ]


def conversation(base_url, model, turns, headers, response_headers, echo_headers):
    """One multi-turn conversation; each turn's text and the response headers asked for."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=20)
    headers, messages, out = dict(headers or {}), [], []
    for prompt in turns:
        messages.append({"role": "user", "content": prompt})
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, extra_headers=headers)
        except openai.APIStatusError as e:
            out.append({"error": {"status": e.status_code, "body": e.body}})
            return {"turns": out}
        text = raw.parse().choices[0].message.content
        messages.append({"role": "assistant", "content": text})
        out.append({"text": text,
                    "headers": {h: raw.headers.get(h) for h in response_headers or []}})
        for h in echo_headers or []:
            if raw.headers.get(h):
                headers[h] = raw.headers.get(h)
    return {"turns": out}


def run(base_url, model="gpt-4o-mini", prompt="Say hello.", stream=False,
        include_usage=None, headers=None, tools=False, turns=None,
        response_headers=None, echo_headers=None):
    if turns is not None:
        return conversation(base_url, model, turns, headers, response_headers, echo_headers)
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0,
                           default_headers=headers or {}, timeout=20)
    kwargs = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if tools:
        kwargs["messages"] = tool_conversation(prompt)
        kwargs["tools"] = [WEATHER]
    try:
        if stream:
            return run_stream(client, kwargs, include_usage)
        resp = client.chat.completions.create(**kwargs)
        choice = resp.choices[0]
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                 for c in choice.message.tool_calls or []]
        return {"text": choice.message.content, "usage": resp.usage.model_dump(),
                "tool_calls": calls, "finish_reason": choice.finish_reason}
    except openai.APIStatusError as e:
        return {"error": {"status": e.status_code, "body": e.body,
                          "headers": dict(e.response.headers)}}
    except Exception as e:  # noqa: BLE001 — the test reports whatever the SDK raised
        return {"exception": f"{type(e).__name__}: {e}"}


def run_stream(client, kwargs, include_usage):
    if include_usage is not None:
        kwargs["stream_options"] = {"include_usage": include_usage}
    text, chunks, usage_chunks, usage, finish = [], 0, 0, None, None
    calls = {}
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        chunks += 1
        if chunk.usage is not None:
            usage_chunks += 1
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.finish_reason:
                finish = choice.finish_reason
            if not choice.delta:
                continue
            if choice.delta.content:
                text.append(choice.delta.content)
            for d in choice.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = d.id or call["id"]
                if d.function:
                    call["name"] = d.function.name or call["name"]
                    call["arguments"] += d.function.arguments or ""
    return {"text": "".join(text), "chunks": chunks, "usage_chunks": usage_chunks,
            "usage": usage, "tool_calls": [calls[i] for i in sorted(calls)],
            "finish_reason": finish}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", help="a JSON list of requests (file, or - for stdin)")
    p.add_argument("--base-url")
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--include-usage", choices=["true", "false"], default=None)
    p.add_argument("--header", action="append", default=[], help="name=value")
    args = p.parse_args()
    if args.jobs:
        with (sys.stdin if args.jobs == "-" else open(args.jobs)) as f:
            jobs = json.load(f)
        json.dump([run(**job) for job in jobs], sys.stdout)
        return
    if not args.base_url:
        p.error("--base-url or --jobs is required")
    include_usage = None if args.include_usage is None else args.include_usage == "true"
    json.dump(run(args.base_url, args.model, args.prompt, args.stream, include_usage,
                  dict(h.split("=", 1) for h in args.header)), sys.stdout)


if __name__ == "__main__":
    main()
