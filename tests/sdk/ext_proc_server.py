#!/usr/bin/env python3
"""An external processing server written independently of tollgate, with grpcio and
the Envoy API stubs of the `xds-protos` package: what a third-party ext_proc server
looks like to tollgate's `extProc` policy. Prints `READY <port>` once serving.

By request path:
- `/py-deny`: an immediate 403 (`x-denied-by: python`, body `denied by python`);
- `/py-slow`: answers the request headers after 2 s (for timeouts);
- `/py-close`: closes the stream at once (the exchange goes on without the server);
- anything else: request headers get `x-py-seen: 1` and lose `x-remove-me`; a request
  body has `secret` replaced by `[py]`; response headers get `x-py-response: 1`; a
  response body has `POST` replaced by `P0ST`.
"""
import argparse
import sys
import time
from concurrent import futures

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2


def header(key, value):
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()))


def path_of(headers):
    for h in headers.headers.headers:
        if h.key == ":path":
            return (h.raw_value or h.value.encode()).decode()
    return ""


def common(set_headers=(), remove=(), body=None):
    mutation = pb.HeaderMutation(set_headers=list(set_headers), remove_headers=list(remove))
    response = pb.CommonResponse(header_mutation=mutation)
    if body is not None:
        response.body_mutation.body = body
    return response


class Processor(pb_grpc.ExternalProcessorServicer):
    def Process(self, request_iterator, context):
        path = ""
        for req in request_iterator:
            kind = req.WhichOneof("request")
            if kind == "request_headers":
                path = path_of(req.request_headers)
                if path.startswith("/py-deny"):
                    yield pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
                        status=http_status_pb2.HttpStatus(code=403),
                        headers=pb.HeaderMutation(set_headers=[header("x-denied-by", "python")]),
                        body=b"denied by python", details="python_deny"))
                    return
                if path.startswith("/py-slow"):
                    time.sleep(2)
                if path.startswith("/py-close"):
                    return
                yield pb.ProcessingResponse(request_headers=pb.HeadersResponse(
                    response=common([header("x-py-seen", "1")], ["x-remove-me"])))
            elif kind == "request_body":
                body = req.request_body.body.replace(b"secret", b"[py]")
                yield pb.ProcessingResponse(request_body=pb.BodyResponse(
                    response=common(body=body)))
            elif kind == "response_headers":
                yield pb.ProcessingResponse(response_headers=pb.HeadersResponse(
                    response=common([header("x-py-response", "1")])))
            elif kind == "response_body":
                body = req.response_body.body.replace(b"POST", b"P0ST")
                yield pb.ProcessingResponse(response_body=pb.BodyResponse(
                    response=common(body=body)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_ExternalProcessorServicer_to_server(Processor(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"READY {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
