#!/usr/bin/env python3
"""An OTLP trace receiver for the tracing tests, written with OpenTelemetry's own
protocol stubs (`opentelemetry-proto`): gRPC (`TraceService/Export`) and HTTP
(`POST /v1/traces`, protobuf). Every span received is appended to `--out` as one JSON
line: name, ids (hex), parent span id, kind, attributes, status, and the protocol it
came over. Prints `READY <grpc-port> <http-port>` once serving.
"""
import argparse
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

LOCK = threading.Lock()


def value_of(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def record(out, request, protocol):
    lines = []
    for rs in request.resource_spans:
        resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                lines.append(json.dumps({
                    "protocol": protocol,
                    "service": resource.get("service.name"),
                    "name": s.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "kind": s.kind,
                    "attributes": {a.key: value_of(a.value) for a in s.attributes},
                    "status": s.status.code,
                }))
    with LOCK, open(out, "a") as f:
        for line in lines:
            f.write(line + "\n")


class Traces(pb_grpc.TraceServiceServicer):
    def __init__(self, out):
        self.out = out

    def Export(self, request, context):
        record(self.out, request, "grpc")
        return pb.ExportTraceServiceResponse()


def http_handler(out):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request = pb.ExportTraceServiceRequest()
            request.ParseFromString(body)
            record(out, request, "http")
            reply = pb.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    return Handler


def main():
    from opentelemetry.proto.trace.v1 import trace_pb2
    if "scope_spans" not in trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_name:
        sys.exit("otlp_receiver: the OpenTelemetry protos here are an old copy (xds-protos "
                 "ships one); reinstall them last: rm .venv/.requirements && scripts/install-test-deps")
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_TraceServiceServicer_to_server(Traces(args.out), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(args.out))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"READY {grpc_port} {http.server_address[1]}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
