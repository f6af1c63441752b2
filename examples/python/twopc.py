#!/usr/bin/python3
"""Two-phase commit in Python over faultline's bank (psycopg2): the
coordinator prepares the debit and the credit on their participants
(BEGIN ... PREPARE TRANSACTION), logs the commit decision in the
coordinator database (twopc_decisions, the commit point), then sends
COMMIT PREPARED to each; any "no" vote rolls back (presumed abort).
recover() resolves every prepared transaction of this coordinator kind
from the log: commit if logged, else log abort and roll back.

Injected crashes (the request's crash_at: before-prepare, after-prepare,
before-rollback, after-rollback, before-commit, after-commit) SIGKILL this
process right there: a real coordinator crash.
"""
import os
import signal
import time

import psycopg2

import faultline_adapter as fl



class TwoPC:
    kind, name, postgres_nodes = "txn", "py-2pc", 2
    doc = "Python 2PC (psycopg2): PREPARE TRANSACTION, decision log, presumed-abort recovery"

    def setup(self, endpoints, options, process):
        ms = int(options.get("lock-timeout-ms", "1000"))
        op = int(options.get("op-timeout-ms", "2000"))
        opts = "-c lock_timeout=%d -c statement_timeout=%d" % (ms, op)
        # gids are server-wide: every one starts with the run's prefix.
        self.prefix = endpoints.get("gid_prefix", "fl:") + "py2pc:"
        self.dsns = [p["dsn"] for p in endpoints["postgres"]]
        self.parts = [self._connect(d, opts) for d in self.dsns]
        self.coord = self._connect(endpoints["coordinator"]["dsn"], opts)
        self.coord.autocommit = True

    @staticmethod
    def _connect(dsn, opts):
        return psycopg2.connect(dsn, connect_timeout=2, options=opts)

    def _crash(self, at, point):
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    def transfer(self, transfer, crash_at=None, **_):
        gid, amount = self.prefix + transfer["id"], transfer["amount"]
        ops = {}  # node -> [(account, delta)]
        ops.setdefault(transfer["from"]["node"], []).append((transfer["from"]["id"], -amount))
        ops.setdefault(transfer["to"]["node"], []).append((transfer["to"]["id"], amount))
        phases, t0 = [], time.time()
        self._crash(crash_at, "before-prepare")
        prepared, no = [], None
        for node, changes in sorted(ops.items()):
            conn = self.parts[node]
            try:
                with conn.cursor() as cur:
                    for account, delta in changes:
                        cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s AND balance + %s >= 0",
                                    (delta, account, delta))
                        if cur.rowcount == 0:
                            raise fl.Aborted("insufficient funds or no account %d on node %d" % (account, node))
                    cur.execute("PREPARE TRANSACTION %s", (gid,))
                conn.commit()  # ends the session's transaction state after PREPARE
                prepared.append(node)
            except Exception as e:
                conn.rollback()
                no = e
                break
        phases.append({"name": "prepare", "ms": (time.time() - t0) * 1000})
        if no is not None:
            self._crash(crash_at, "before-rollback")
            for node in prepared:
                self._finish(node, gid, "ROLLBACK")
            self._crash(crash_at, "after-rollback")
            raise no if isinstance(no, fl.Aborted) else fl.Aborted("vote no: %s" % no)
        self._crash(crash_at, "after-prepare")
        t1 = time.time()
        with self.coord.cursor() as cur:  # the commit point
            cur.execute("INSERT INTO twopc_decisions(gid, decision, participants) VALUES (%s, 'commit', %s) "
                        "ON CONFLICT (gid) DO NOTHING RETURNING decision",
                        (gid, ",".join(str(n) for n in prepared)))
            if cur.fetchone() is None:  # recovery logged abort first
                raise fl.Aborted("recovery aborted %s first" % gid)
        phases.append({"name": "decide", "ms": (time.time() - t1) * 1000})
        self._crash(crash_at, "before-commit")
        t2 = time.time()
        for i, node in enumerate(prepared):
            self._finish(node, gid, "COMMIT")
            if i == 0:
                self._crash(crash_at, "after-commit")
        phases.append({"name": "commit", "ms": (time.time() - t2) * 1000})
        return {"phases": phases}

    def _finish(self, node, gid, verb):
        conn = self.parts[node]
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(verb + " PREPARED %s", (gid,))
        except psycopg2.errors.UndefinedObject:
            pass  # already finished
        finally:
            conn.autocommit = False

    def recover(self, **_):
        for node, conn in enumerate(self.parts):
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE %s",
                            (self.prefix + "%",))
                gids = [r[0] for r in cur.fetchall()]
            conn.autocommit = False
            for gid in gids:
                with self.coord.cursor() as cur:
                    cur.execute("INSERT INTO twopc_decisions(gid, decision, participants) VALUES (%s, 'abort', '') "
                                "ON CONFLICT (gid) DO NOTHING", (gid,))
                    cur.execute("SELECT decision FROM twopc_decisions WHERE gid = %s", (gid,))
                    decision = cur.fetchone()[0]
                self._finish(node, gid, "COMMIT" if decision == "commit" else "ROLLBACK")


if __name__ == "__main__":
    fl.serve(TwoPC())
