"""moto's S3 server with a request log, for the replication benchmark.

Run with the Python of the virtualenv that has `moto[server]`:

    .tools/venv/bin/python benchmarks/replication/moto_logged.py -p PORT --log FILE

It serves exactly what `moto_server -H 127.0.0.1 -p PORT` serves, and appends one
JSON line per request to FILE:

    {"t0": ns, "t1": ns, "m": "PUT", "p": "/bucket/key", "q": "list-type=2&...",
     "s": 200, "n": request body bytes, "h": "hex of the first 128 body bytes"}

t0 is when the request reached the server, t1 when moto produced its response
status (the object is stored by then), both wall-clock nanoseconds
(time.time_ns, comparable with other processes on this host). "h" is only filled
for PUTs of `*.ltx` keys, so the benchmark can read the LTX header (WAL offset,
size and salts) without sending requests of its own. aws-chunked bodies are
decoded first.
"""

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading
import time

MAX_CAPTURE_BODY = 64 * 1024 * 1024


def decode_aws_chunked(body):
    """First bytes of an aws-chunked body: `hexsize[;chunk-signature=..]\\r\\n data\\r\\n ...`."""
    out = bytearray()
    pos = 0
    while pos < len(body) and len(out) < 256:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            break
        out += body[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(out)


class RequestLog:
    def __init__(self, app, path):
        self.app = app
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1)

    def __call__(self, environ, start_response):
        t0 = time.time_ns()
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        rec = {"t0": t0, "m": method, "p": path, "q": environ.get("QUERY_STRING", ""), "n": 0, "h": ""}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        rec["n"] = length
        if method == "PUT" and path.endswith(".ltx") and 0 < length <= MAX_CAPTURE_BODY:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            content_sha = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")
            encoding = environ.get("HTTP_CONTENT_ENCODING", "")
            if content_sha.startswith("STREAMING") or "aws-chunked" in encoding:
                head = decode_aws_chunked(body)
            else:
                head = body[:128]
            rec["h"] = head[:128].hex()

        def logged_start_response(status, headers, exc_info=None):
            rec["t1"] = time.time_ns()
            rec["s"] = int(status.split(" ", 1)[0])
            line = json.dumps(rec, separators=(",", ":"))
            with self.lock:
                self.file.write(line + "\n")
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return self.app(environ, logged_start_response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from werkzeug.serving import run_simple
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, RequestLog(app, args.log), threaded=True)


if __name__ == "__main__":
    main()
