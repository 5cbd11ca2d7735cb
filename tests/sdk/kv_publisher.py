#!/usr/bin/env python3
"""A vLLM KV-event publisher for the endpoint picker's precise prefix cache, written
with pyzmq and msgpack — independent of tollgate's encoder — in vLLM's exact wire
format (vllm/distributed/kv_events.py): a ZeroMQ PUB socket sending three frames, the
topic, the sequence number as 8 bytes big-endian (from 0), and a msgpack EventBatch as
msgspec encodes it with array_like=True: [ts, events, data_parallel_rank], each event
tagged ("BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id,
medium, lora_name) — or, with "form": "map", {"type": ..., named fields}.

Two PUB sockets on the same port, one on 127.0.0.1 and one on [::1], so one process
publishes for two endpoints of a pool (the picker subscribes to <endpoint ip>:<port>).
Controlled over HTTP on 127.0.0.1 (JSON bodies; "to" is "v4" or "v6"):
- POST /publish {"to", "events": [{"type", ...fields}], "form": "array"|"map",
  "bytes_hashes": bool}: one batch (an empty list is a heartbeat);
- POST /malformed {"to"}: messages the picker must drop, one of each kind; prints
  nothing back but the count sent;
- POST /gap {"to", "skip": n}: the next sequence number jumps by n.
Prints `READY <pub-port> <control-port>` once serving.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import msgpack
    import zmq
except ImportError as e:  # the test checks first; this is for running it by hand
    sys.exit(f"kv_publisher.py needs pyzmq and msgpack ({e}): run scripts/install-test-deps")

STORED_FIELDS = ["block_hashes", "parent_block_hash", "token_ids", "block_size",
                 "lora_id", "medium", "lora_name"]
REMOVED_FIELDS = ["block_hashes", "medium"]


class Publisher:
    def __init__(self, socket):
        self.socket = socket
        self.seq = 0
        self.lock = threading.Lock()

    def send(self, payload, seq=None):
        with self.lock:
            if seq is None:
                seq = self.seq
                self.seq += 1
            self.socket.send_multipart([b"", seq.to_bytes(8, "big"), payload])

    def send_frames(self, frames):
        with self.lock:
            self.socket.send_multipart(frames)


def hash_value(h, as_bytes):
    if h is None or not as_bytes:
        return h
    # A sha256-sized digest whose last 8 bytes are the hash.
    return bytes(range(24)) + int(h).to_bytes(8, "big")


def encode_event(e, form, as_bytes):
    kind = e["type"]
    fields = {"BlockStored": STORED_FIELDS, "BlockRemoved": REMOVED_FIELDS,
              "AllBlocksCleared": []}[kind]
    values = {
        "block_hashes": [hash_value(h, as_bytes) for h in e.get("block_hashes", [])],
        "parent_block_hash": hash_value(e.get("parent_block_hash"), as_bytes),
        "token_ids": e.get("token_ids", []),
        "block_size": e.get("block_size", 16),
        "lora_id": None,
        "medium": "GPU",
        "lora_name": e.get("lora_name"),
    }
    if form == "map":
        out = {"type": kind}
        out.update({f: values[f] for f in fields})
        return out
    return [kind] + [values[f] for f in fields]


def batch(events, form="array", as_bytes=False):
    return msgpack.packb([time.time(), [encode_event(e, form, as_bytes) for e in events], 0],
                         use_bin_type=True)


def malformed(pub):
    """Sends one message of each malformed kind; returns how many."""
    seq = pub.seq.to_bytes(8, "big")
    bad = [
        [b"", seq],                                   # two frames
        [b"", b"\x00\x01", batch([])],                # short sequence number
        [b"", seq, b"\xc1 not msgpack"],              # not msgpack
        [b"", seq, msgpack.packb({"ts": 1.0, "events": []})],  # a map batch
        [b"", seq, msgpack.packb([1.0, [["BlockStolen", [1], None, [], 16]]])],
        [b"", seq, msgpack.packb([1.0, [["BlockStored", [1], None, [1, 2, 3], 16]]])],
        [b"", seq, msgpack.packb([1.0, [{"block_hashes": [1], "medium": "GPU"}]])],  # no tag
        [b"", seq, b"\xdd\xff\xff\xff\xff"],          # an array claiming 4G items
        [b"", seq, b"\x91" * 50000],                  # nested deeper than any bound
    ]
    for frames in bad:
        pub.send_frames(frames)
    return len(bad)


def main():
    ctx = zmq.Context.instance()
    v4 = ctx.socket(zmq.PUB)
    port = v4.bind_to_random_port("tcp://127.0.0.1")
    v6 = ctx.socket(zmq.PUB)
    v6.setsockopt(zmq.IPV6, 1)
    v6.bind(f"tcp://[::1]:{port}")
    pubs = {"v4": Publisher(v4), "v6": Publisher(v6)}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            pub = pubs[body.get("to", "v6")]
            if self.path == "/publish":
                pub.send(batch(body.get("events", []), body.get("form", "array"),
                               body.get("bytes_hashes", False)))
                answer = {"seq": pub.seq - 1}
            elif self.path == "/malformed":
                answer = {"sent": malformed(pub)}
            elif self.path == "/gap":
                with pub.lock:
                    pub.seq += int(body.get("skip", 1))
                answer = {"seq": pub.seq}
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    control = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY {port} {control.server_address[1]}", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
