#!/usr/bin/env python3
"""An HTTP service for health checks (PORT from the env).

GET answers 500 while the file named by SICK_FILE exists, else 200. It starts
listening only after LISTEN_DELAY seconds, and appends "start|stop <module>
<time>" lines to EVENTS_FILE (if set) when it starts listening and on SIGTERM.
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODULE = os.environ.get("GDOS_MODULE", "?")


def event(kind):
    path = os.environ.get("EVENTS_FILE")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{kind} {MODULE} {time.time():.6f}\n")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        sick = os.environ.get("SICK_FILE")
        status = 500 if sick and os.path.exists(sick) else 200
        body = f"{status} {os.getpid()}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def stop(*_):
    event("stop")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
time.sleep(float(os.environ.get("LISTEN_DELAY", "0")))
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
event("start")
print("serving on", os.environ["PORT"], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    time.sleep(1)
