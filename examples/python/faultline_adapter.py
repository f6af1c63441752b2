"""faultline's process protocol (docs/protocol.md, v1) for Python adapters.

An adapter is a class with a declaration (kind, nodes, ...) and one method
per operation; serve(adapter) runs the request loop. Methods get the
request's fields as keyword arguments and return a dict of reply fields.
Raise NotAcquired / NotHeld / Aborted for a definite "no"; any other
exception is reported as indeterminate (the harness records it as info).
"""
import json
import sys
import time


class NotAcquired(Exception): pass
class NotHeld(Exception): pass
class Aborted(Exception): pass


_OUTCOME = {NotAcquired: "not-acquired", NotHeld: "not-held", Aborted: "aborted"}
_offset = 0.0
_DECL = ("kind", "name", "doc", "redis_nodes", "postgres_nodes", "fencing", "mutant", "crash_in_acquire")


def clock():
    """The client's clock: faultline's hint (now_ms; skewed by clock-drift) or time.time()."""
    return time.time() + _offset


def serve(adapter):
    global _offset
    for line in sys.stdin:
        req = json.loads(line)
        if "now_ms" in req:
            _offset = req.pop("now_ms") / 1000.0 - time.time()
        rid, op = req.pop("id"), req.pop("op")
        reply = {"id": rid, "outcome": "ok"}
        try:
            if op == "init":
                reply["protocol"] = 1
                reply.update({k: getattr(adapter, k) for k in _DECL if hasattr(adapter, k)})
                if not req["describe"]:
                    adapter.setup(req["endpoints"], req["options"], req["process"])
            else:
                reply.update(getattr(adapter, op)(**req) or {})
        except tuple(_OUTCOME) as e:
            reply.update(outcome=_OUTCOME[type(e)], message=str(e))
        except Exception as e:  # unknown outcome: never a definite "no"
            reply.update(outcome="indeterminate", message="%s: %s" % (type(e).__name__, e))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
