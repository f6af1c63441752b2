#!/usr/bin/python3
"""A correct single-node Redis lock in Python: SET key token NX PX ttl to
acquire (one atomic command), a Lua compare-and-delete to release and a Lua
compare-and-pexpire to refresh, so a client never frees or extends a lock it
no longer holds. Like faultline's redis-setnx: safe while the holder
finishes within the ttl; no fencing tokens."""
import time
import uuid

import redis

import faultline_adapter as fl

RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"


class SafeLock:
    kind, name, redis_nodes = "lock", "safe-lock", 1
    doc = "Python: SET NX PX + Lua compare-and-delete on one Redis; unsafe past the ttl (no fencing)"

    def setup(self, endpoints, options, process):
        r = endpoints["redis"][0]
        host, port = r["addr"].rsplit(":", 1)
        self.conn = redis.Redis(host=host, port=int(port), password=r["password"] or None,
                                socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
        self.release_script = self.conn.register_script(RELEASE)
        self.refresh_script = self.conn.register_script(REFRESH)

    def try_acquire(self, key, ttl_ms, **_):
        token = str(uuid.uuid4())
        if not self.conn.set(key, token, nx=True, px=ttl_ms):
            raise fl.NotAcquired("held")
        return {"token": token}

    def acquire(self, key, ttl_ms, timeout_ms, **_):
        t0 = fl.clock()
        end, delay = t0 + timeout_ms / 1000.0, 0.002
        while True:
            try:
                attempt = fl.clock()
                return dict(self.try_acquire(key, ttl_ms), waited_ms=(attempt - t0) * 1000)
            except fl.NotAcquired:
                if fl.clock() + delay >= end:
                    raise fl.NotAcquired("timed out after %d ms" % timeout_ms)
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def release(self, key, token, **_):
        if not self.release_script(keys=[key], args=[token]):
            raise fl.NotHeld("the key holds another token or expired")

    def refresh(self, key, token, ttl_ms, **_):
        if not self.refresh_script(keys=[key], args=[token, ttl_ms]):
            raise fl.NotHeld("the key holds another token or expired")


if __name__ == "__main__":
    fl.serve(SafeLock())
