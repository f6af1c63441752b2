#!/usr/bin/python3
"""The seed article's Redis lock, as written there (a MUTANT): SETNX with a
uuid value, then EXPIRE as a second command; acquire retries until its
timeout; release is GET, compare in Python, DEL.

Its bugs, which faultline's checkers catch:
- a holder that dies between SETNX and EXPIRE leaves a key with no ttl:
  held forever (it dies right there when faultline's holder-crash asks,
  "crash": true in the acquire request, or with the option
  crash-after-setnx: "true" = every process, an integer N = process N);
- a holder paused past the ttl writes after the next holder (no fencing);
- release is not atomic: a key that expires and is taken between GET and
  DEL is deleted from under its new owner (option release-gap=DURATION,
  e.g. 1300ms, waits there).
One deviation from the article: PEXPIRE (milliseconds) instead of EXPIRE
(whole seconds), so that a 400 ms ttl means 400 ms.
"""
import os
import signal
import time
import uuid

import redis

import faultline_adapter as fl


class SeedLock:
    kind, name, redis_nodes, mutant = "lock", "seed-lock", 1, True
    crash_in_acquire = True  # honours "crash": true between SETNX and EXPIRE
    doc = "MUTANT (Python, the article's lock): SETNX then EXPIRE, GET+compare+DEL release"

    def setup(self, endpoints, options, process):
        r = endpoints["redis"][0]
        host, port = r["addr"].rsplit(":", 1)
        self.conn = redis.Redis(host=host, port=int(port), password=r["password"] or None,
                                socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
        crash = options.get("crash-after-setnx", "")
        self.crash = crash == "true" or crash == str(process)
        gap = options.get("release-gap", "0") or "0"  # a Go duration: 800ms, 1.3s
        self.release_gap = float(gap[:-2]) / 1000 if gap.endswith("ms") else float(gap.rstrip("s"))

    def acquire(self, key, ttl_ms, timeout_ms, crash=False, **_):
        identifier = str(uuid.uuid4())
        crash = crash or self.crash
        t0 = fl.clock()
        end = t0 + timeout_ms / 1000.0
        while True:
            attempt = fl.clock()
            if self.conn.setnx(key, identifier):
                if crash:  # the process dies right here: no EXPIRE
                    os.kill(os.getpid(), signal.SIGKILL)
                self.conn.pexpire(key, ttl_ms)
                return {"token": identifier, "waited_ms": (attempt - t0) * 1000}
            if fl.clock() >= end:
                raise fl.NotAcquired("timed out after %d ms" % timeout_ms)
            time.sleep(.001)

    def try_acquire(self, key, ttl_ms, crash=False, **_):
        return self.acquire(key, ttl_ms, 0, crash)

    def release(self, key, token, **_):
        if self.conn.get(key) != token:
            raise fl.NotHeld("the key holds another value")
        time.sleep(self.release_gap)
        self.conn.delete(key)

    def refresh(self, key, token, ttl_ms, **_):
        if self.conn.get(key) != token:
            raise fl.NotHeld("the key holds another value")
        self.conn.pexpire(key, ttl_ms)


if __name__ == "__main__":
    fl.serve(SeedLock())
