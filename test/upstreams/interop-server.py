"""An upstream gRPC server in Python (grpcio) for the forwarding interop
tests (test/upstreams/interop.test.ts): interop.Echo through a
GenericRpcHandler, raw bytes, no generated code. The same behaviour as
interop-server.go (see there), with x-server: python. No reflection."""
import sys
import threading
import time
from concurrent import futures

import grpc

cancelled = 0
lock = threading.Lock()


def first(context, key):
    for k, v in context.invocation_metadata():
        if k == key:
            return v
    return None


def begin(context):
    left = context.time_remaining()
    context.send_initial_metadata((
        ('x-server', 'python'),
        ('x-deadline-ms', 'none' if left is None or left > 1e9 else str(int(left * 1000))),
        ('x-header-bin', bytes([1, 2, 3])),
    ))
    context.set_trailing_metadata((('x-trailer', 'done'), ('x-trailer-bin', bytes([0, 255]))))
    sleep = first(context, 'x-sleep-ms')
    if sleep is not None:
        until = time.time() + int(sleep) / 1000
        while time.time() < until and context.is_active():
            time.sleep(0.005)


def finish(context):
    code = first(context, 'x-status')
    if code is not None:
        status = next(c for c in grpc.StatusCode if c.value[0] == int(code))
        context.abort(status, first(context, 'x-message') or '')


def count_cancel():
    global cancelled
    with lock:
        cancelled += 1


def unary(request, context):
    begin(context)
    finish(context)
    return request


def server_stream(request, context):
    begin(context)
    if first(context, 'x-count') == 'endless':
        # Counted when the RPC ends (here, only by a cancel): grpcio stops
        # taking responses from a cancelled call, so a count after the loop
        # runs only if is_active() sees the cancel before the next yield.
        context.add_callback(count_cancel)
        while context.is_active():
            yield request
            time.sleep(0.005)
        return
    for _ in range(int(first(context, 'x-count') or 3)):
        yield request
    finish(context)


def client_stream(requests, context):
    begin(context)
    out = b''.join(requests)
    finish(context)
    return out


def bidi(requests, context):
    begin(context)
    for request in requests:
        yield request
    finish(context)


def cancelled_count(request, context):
    with lock:
        return str(cancelled).encode()


class Echo(grpc.GenericRpcHandler):
    def service(self, details):
        return {
            '/interop.Echo/Unary': grpc.unary_unary_rpc_method_handler(unary),
            '/interop.Echo/ServerStream': grpc.unary_stream_rpc_method_handler(server_stream),
            '/interop.Echo/ClientStream': grpc.stream_unary_rpc_method_handler(client_stream),
            '/interop.Echo/Bidi': grpc.stream_stream_rpc_method_handler(bidi),
            '/interop.Echo/Cancelled': grpc.unary_unary_rpc_method_handler(cancelled_count),
        }.get(details.method)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[Echo()])
port = server.add_insecure_port('127.0.0.1:0')
server.start()
print('listening %d' % port, flush=True)
# The parent closing our stdin ends this process: it is never left behind.
sys.stdin.read()
server.stop(0)
