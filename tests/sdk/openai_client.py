#!/usr/bin/env python3
"""Drives a chat completion through the official `openai` SDK and prints what the client
saw as one JSON object: the text, the usage, how many chunks carried usage, or the error
(status, body, headers). The e2e tests run it against tollgate (via Envoy or standalone).
"""
import argparse
import json
import sys

import openai


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--include-usage", choices=["true", "false"], default=None)
    p.add_argument("--header", action="append", default=[], help="name=value")
    args = p.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test", max_retries=0,
                           default_headers=headers, timeout=20)
    kwargs = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    out = {}
    try:
        if args.stream:
            if args.include_usage is not None:
                kwargs["stream_options"] = {"include_usage": args.include_usage == "true"}
            text, chunks, usage_chunks, usage = [], 0, 0, None
            for chunk in client.chat.completions.create(stream=True, **kwargs):
                chunks += 1
                if chunk.usage is not None:
                    usage_chunks += 1
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        text.append(choice.delta.content)
            out = {"text": "".join(text), "chunks": chunks, "usage_chunks": usage_chunks,
                   "usage": usage}
        else:
            resp = client.chat.completions.create(**kwargs)
            out = {"text": resp.choices[0].message.content, "usage": resp.usage.model_dump()}
    except openai.APIStatusError as e:
        out = {"error": {"status": e.status_code, "body": e.body,
                         "headers": dict(e.response.headers)}}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
