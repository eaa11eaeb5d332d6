#!/usr/bin/env python3
"""An nginx auth_http service, as one is written for nginx's mail proxy.

Usage: service.py TABLE LOG. It prints the port it listens on (127.0.0.1),
then serves. TABLE is a JSON file read at every request:
  {"key": shared secret expected in X-Auth-Key,
   "users": {user: {"pass": ..., "server": ..., "port": ...,
                    "user": rewritten user, "pass_upstream": rewritten pass,
                    "refuse": text, "wait": seconds, "sleep": seconds,
                    "garbage": true, "wait_first": seconds}}}
Every request's headers are appended to LOG as one JSON line.
"""
import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TABLE, LOG = sys.argv[1], sys.argv[2]
seen = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def answer(self, headers):
        self.send_response(200)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def do_GET(self):
        with open(TABLE) as f:
            table = json.load(f)
        with open(LOG, "a") as f:
            f.write(json.dumps({k: v for k, v in self.headers.items()}) + "\n")
        if self.headers.get("X-Auth-Key") != table["key"]:
            return self.answer([("Auth-Status", "Internal server error")])
        # nginx URL-encodes the user name and the password.
        user = urllib.parse.unquote(self.headers.get("Auth-User", ""))
        password = urllib.parse.unquote(self.headers.get("Auth-Pass", ""))
        entry = table["users"].get(user)
        if entry is None:
            return self.answer([("Auth-Status", "Invalid login or password"), ("Auth-Wait", "1")])
        if entry.get("sleep"):
            time.sleep(entry["sleep"])
        if entry.get("garbage"):
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"upstream database down\n")
            return
        if entry.get("wait_first") and user not in seen:
            seen[user] = True
            return self.answer([("Auth-Status", "WAIT"), ("Auth-Wait", str(entry["wait_first"]))])
        if entry.get("refuse"):
            h = [("Auth-Status", entry["refuse"])]
            if entry.get("wait"):
                h.append(("Auth-Wait", str(entry["wait"])))
            return self.answer(h)
        if password != entry["pass"]:
            return self.answer([("Auth-Status", "Invalid login or password"), ("Auth-Wait", "1")])
        h = [("Auth-Status", "OK")]
        if entry.get("server"):
            h += [("Auth-Server", entry["server"]), ("Auth-Port", str(entry["port"]))]
        if entry.get("user"):
            h.append(("Auth-User", entry["user"]))
        if entry.get("pass_upstream"):
            h.append(("Auth-Pass", entry["pass_upstream"]))
        self.answer(h)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
