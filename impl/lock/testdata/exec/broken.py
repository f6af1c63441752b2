#!/usr/bin/python3
"""A deliberately broken lock adapter for the protocol tests. Its NAME
(exec:PATH:NAME) picks how it breaks once init is done:
garbage, hang, crash, unknown-id, bad-outcome, no-token, init-garbage,
init-kind. Every other op of a healthy mode answers ok."""
import json
import os
import sys
import time

mode = None
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "init":
        mode = req["name"]
        if mode == "init-garbage":
            print("hello from a script that prints a banner", flush=True)
            continue
        kind = "queue" if mode == "init-kind" else "lock"
        print(json.dumps({"id": req["id"], "outcome": "ok", "protocol": 1, "kind": kind, "redis_nodes": 1}), flush=True)
        continue
    if mode == "garbage":
        print("Traceback? no: garbage on stdout", flush=True)
    elif mode == "hang":
        time.sleep(3600)
    elif mode == "crash":
        sys.stderr.write("broken adapter: crashing mid-operation\n")
        sys.stderr.flush()
        os._exit(3)
    elif mode == "unknown-id":
        print(json.dumps({"id": req["id"] + 1000, "outcome": "ok", "token": "t"}), flush=True)
    elif mode == "bad-outcome":
        print(json.dumps({"id": req["id"], "outcome": "maybe"}), flush=True)
    elif mode == "no-token":
        print(json.dumps({"id": req["id"], "outcome": "ok"}), flush=True)
    else:
        print(json.dumps({"id": req["id"], "outcome": "ok", "token": "t"}), flush=True)
