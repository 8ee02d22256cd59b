#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A tiny fault-injecting HTTP proxy in front of a test registry (127.0.0.1 only).

usage: registry_proxy.py UPSTREAM_PORT PORT_FILE LOG_FILE MODE [DIGEST]

Listens on a free loopback port (written to PORT_FILE), forwards every request to
127.0.0.1:UPSTREAM_PORT and logs one JSON line per request to LOG_FILE:
{"method", "path", "range", "status", "upload_bytes"} (upload_bytes: the request body's size
for blob uploads, PATCH/PUT/POST under /blobs/uploads/).

MODE, for GET of the blob DIGEST (other requests pass):
  pass      no fault
  corrupt   one byte of the blob flipped (same length)
  truncate  the full Content-Length announced, half the bytes sent, the connection closed: always
  cut-once  as truncate the first time only; later requests (Range resumes) pass
  slow      the blob sent in small pieces with pauses (for interruption tests)
  fail-upload  every PATCH (blob upload) answered 500
  deep-manifest  every manifest GET answered with JSON nested 200,000 levels deep
It stops by itself after 10 minutes.
"""
import http.client
import http.server
import json
import socketserver
import sys
import threading
import time

UP = int(sys.argv[1])
PORT_FILE, LOG_FILE, MODE = sys.argv[2], sys.argv[3], sys.argv[4]
DIGEST = sys.argv[5] if len(sys.argv) > 5 else ""
lock = threading.Lock()
state = {"cut": 0}


def log(entry):
    with lock:
        with open(LOG_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        try:
            body = self.read_body()
        except (ValueError, OSError):  # the client went away mid-body (a cancelled upload)
            self.close_connection = True
            return
        if MODE == "deep-manifest" and self.command == "GET" and "/manifests/" in self.path:
            msg = b"[" * 200000 + b"]" * 200000
            log({"method": self.command, "path": self.path, "range": None, "status": 200, "upload_bytes": 0})
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if MODE == "fail-upload" and self.command == "PATCH":
            log({"method": self.command, "path": self.path, "range": None, "status": 500, "upload_bytes": len(body)})
            msg = b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        if body or self.command in ("PUT", "PATCH", "POST"):
            hdrs["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", UP, timeout=60)
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "PATCH", "POST") else None, headers=hdrs)
        r = conn.getresponse()
        data = r.read() if self.command != "HEAD" else b""
        is_target = self.command == "GET" and DIGEST and self.path.endswith("/blobs/" + DIGEST) and r.status in (200, 206)
        upload = len(body) if "/blobs/uploads/" in self.path and self.command in ("PATCH", "PUT", "POST") else 0
        log({"method": self.command, "path": self.path, "range": self.headers.get("Range"), "status": r.status,
             "upload_bytes": upload})
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            self.send_header(k, v)
        length = r.getheader("Content-Length")
        if self.command == "HEAD":
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if is_target and MODE == "corrupt" and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        cut = is_target and len(data) > 1 and (MODE == "truncate" or (MODE == "cut-once" and state["cut"] == 0))
        keep = len(data) // 2
        if is_target and MODE == "truncate":
            # Never more than the first half of the blob, whatever the Range asked.
            cr = r.getheader("Content-Range") or ""
            start = int(cr.split(" ")[1].split("-")[0]) if cr.startswith("bytes ") else 0
            total = int(cr.split("/")[1]) if "/" in cr else len(data)
            keep = max(0, total // 2 - start)
            cut = True
        self.send_header("Content-Length", str(len(data)))
        if cut:
            state["cut"] += 1
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(data[:keep])
            self.wfile.flush()
            self.close_connection = True
            return
        if is_target and MODE == "slow":
            try:
                for i in range(0, len(data), 256):
                    self.wfile.write(data[i:i + 256])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_PATCH = do_POST = do_DELETE = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
threading.Timer(600, srv.shutdown).start()
srv.serve_forever()
