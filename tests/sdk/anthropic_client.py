#!/usr/bin/env python3
"""Drives a message through the official `anthropic` SDK and prints what the client saw
as one JSON object: the text and the usage, or the error (status, body, headers).
"""
import argparse
import json
import sys

import anthropic


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", default="claude-sonnet-4-5")
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--header", action="append", default=[], help="name=value")
    args = p.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    client = anthropic.Anthropic(base_url=args.base_url, api_key="sk-ant-test", max_retries=0,
                                 default_headers=headers, timeout=20)
    kwargs = {"model": args.model, "max_tokens": 64,
              "messages": [{"role": "user", "content": args.prompt}]}
    try:
        if args.stream:
            with client.messages.stream(**kwargs) as stream:
                text = "".join(stream.text_stream)
                final = stream.get_final_message()
            out = {"text": text, "usage": final.usage.model_dump()}
        else:
            msg = client.messages.create(**kwargs)
            out = {"text": "".join(b.text for b in msg.content if b.type == "text"),
                   "usage": msg.usage.model_dump()}
    except anthropic.APIStatusError as e:
        out = {"error": {"status": e.status_code, "body": e.body,
                         "headers": dict(e.response.headers)}}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
