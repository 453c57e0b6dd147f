#!/usr/bin/python3
"""py_client.py -- drives a Redis server (or kvp) with redis-py, as an
application would, one group of checks at a time.

    py_client.py [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP...

Prints one line per check, `ok - WHAT` or `not ok - WHAT: DETAIL` (a check
that cannot run here says `ok - WHAT # SKIP REASON`); the exit status is 1
when a check failed, 2 on a usage error. PEER_PORT is a second proxy of the
same namespace (pub/sub across proxies); it defaults to PORT. Every key
starts with `py:` so the drivers can share a server. Groups: see
tests/clients/README.

Run it with Debian's python3 (python3-redis lives in its dist-packages).
"""
import inspect
import sys
import threading
import time
import traceback

import redis

GROUPS = ("basic", "tx", "blocking", "pubsub", "scan", "scripts", "resp3", "info")
P = "py:"
# Longer than the proxy's request_timeout in tests/it (1 s): a blocking pop
# with timeout 0 must wait for as long as it takes.
WAKE_AFTER = 1.3


class Failed(Exception):
    pass


class Skip(Exception):
    pass


def eq(got, want, what=""):
    if got != want:
        raise Failed("%sexpected %r, got %r" % (what + ": " if what else "", want, got))


def true(cond, detail):
    if not cond:
        raise Failed(detail)


class Driver:
    def __init__(self, host, port, password, peer):
        self.host, self.port, self.password, self.peer = host, port, password, peer
        self.failed = 0
        self.r = self.client()

    def client(self, port=None, **kw):
        # socket_timeout bounds every read, so a check never hangs the run
        return redis.Redis(host=self.host, port=port or self.port,
                           password=self.password or None, socket_timeout=10, **kw)

    def check(self, what, fn):
        try:
            fn()
            print("ok - %s" % what)
        except Skip as e:
            print("ok - %s # SKIP %s" % (what, e))
        except Failed as e:
            self.failed += 1
            print("not ok - %s: %s" % (what, e))
        except Exception as e:  # a library error is a failed check, with its words
            self.failed += 1
            print("not ok - %s: %s: %s" % (what, type(e).__name__, str(e).replace("\n", " ")))
            tb = traceback.extract_tb(e.__traceback__)
            mine = [f for f in tb if f.filename == __file__]
            if mine:
                print("#   at line %d" % mine[-1].lineno)
        sys.stdout.flush()

    # ------------------------------------------------------------ basic

    def g_basic(self):
        r = self.r

        def get_set():
            eq(r.set(P + "k", "v1"), True)
            eq(r.get(P + "k"), b"v1")
            eq(r.get(P + "missing"), None)

        def mset_mget():
            keys = [P + "m%d" % i for i in range(20)]  # spread over buckets
            eq(r.mset({k: "val-" + k for k in keys}), True)
            eq(r.mget(keys + [P + "missing"]),
               [("val-" + k).encode() for k in keys] + [None])

        def delete():
            r.mset({P + "d1": 1, P + "d2": 2, P + "d3": 3})
            eq(r.delete(P + "d1", P + "d2", P + "d3", P + "missing"), 3)
            eq(r.exists(P + "d1", P + "d2"), 0)

        def incr():
            r.delete(P + "n")
            eq(r.incr(P + "n"), 1)
            eq(r.incrby(P + "n", 41), 42)
            eq(r.decr(P + "n"), 41)

        def pipeline():
            with r.pipeline(transaction=False) as p:
                p.set(P + "p", "a").append(P + "p", "b").get(P + "p")
                p.incr(P + "pn").delete(P + "pn")
                eq(p.execute(), [True, 2, b"ab", 1, 1])

        def binary():
            val = bytes(range(256)) + b"\r\n\x00end"
            key = P + "bin:\x00\r\n\u00e9"
            r.set(key, val)
            eq(r.get(key), val)
            eq(r.strlen(key), len(val))

        def expire():
            r.set(P + "e", "x", px=150)
            ttl = r.pttl(P + "e")
            true(0 < ttl <= 150, "pttl %r" % ttl)
            r.set(P + "e2", "x")
            eq(r.expire(P + "e2", 100), True)
            true(90 <= r.ttl(P + "e2") <= 100, "ttl %r" % r.ttl(P + "e2"))
            eq(r.persist(P + "e2"), True)
            eq(r.ttl(P + "e2"), -1)
            time.sleep(0.3)
            eq(r.get(P + "e"), None, "after the expiry")

        self.check("GET/SET", get_set)
        self.check("MSET/MGET over many buckets", mset_mget)
        self.check("DEL of several keys counts them", delete)
        self.check("INCR/INCRBY/DECR", incr)
        self.check("pipeline(transaction=False)", pipeline)
        self.check("binary-safe keys and values", binary)
        self.check("SET PX, EXPIRE, TTL, PERSIST, expiry", expire)

    # ------------------------------------------------------------ tx

    def g_tx(self):
        r = self.r
        other = self.client()  # a second application instance

        def default_pipeline():
            r.delete(P + "tx")
            with r.pipeline() as p:  # transaction=True: MULTI ... EXEC
                p.set(P + "tx", 1).incr(P + "tx").get(P + "tx")
                eq(p.execute(), [True, 2, b"2"])

        def watch_retry():
            # the redis-py docs' optimistic-locking loop; another client
            # writes the key between WATCH and EXEC on the first attempt
            r.set(P + "seq", 10)
            attempts = 0
            with r.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(P + "seq")
                        value = int(pipe.get(P + "seq"))
                        attempts += 1
                        if attempts == 1:
                            other.incrby(P + "seq", 100)
                        pipe.multi()
                        pipe.set(P + "seq", value + 1)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
            eq(attempts, 2, "attempts")
            eq(r.get(P + "seq"), b"111")

        def watch_threads():
            # two writers incrementing one counter through r.transaction()
            r.set(P + "ctr", 0)
            errors = []

            def worker(cli):
                def bump(pipe):
                    v = int(pipe.get(P + "ctr"))
                    pipe.multi()
                    pipe.set(P + "ctr", v + 1)
                try:
                    for _ in range(50):
                        cli.transaction(bump, P + "ctr")
                except Exception as e:
                    errors.append(e)
            ts = [threading.Thread(target=worker, args=(c,)) for c in (r, other)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                raise errors[0]
            eq(r.get(P + "ctr"), b"100")

        def queue_error():
            # a command refused while queuing: EXEC fails (EXECABORT) and
            # nothing of the transaction runs. tests/it also looks for the
            # `{txfail}:new` key on every master.
            r.set(P + "{txfail}:old", "orig")
            r.delete(P + "{txfail}:new")
            err = None
            try:
                with r.pipeline() as p:
                    p.set(P + "{txfail}:old", "changed")
                    p.set(P + "{txfail}:new", "x")
                    p.execute_command("SET", P + "{txfail}:old")  # wrong arity
                    p.execute()
            except redis.ResponseError as e:
                err = str(e)
            # the data first: that is what the application loses
            eq(r.get(P + "{txfail}:old"), b"orig")
            eq(r.exists(P + "{txfail}:new"), 0, "exists {txfail}:new")
            true(err is not None, "execute() did not raise")
            true("wrong number of arguments for 'set'" in err, "error %r" % err)

        def runtime_error():
            # an error at EXEC time fails only its own command, as in Redis
            r.set(P + "{txrt}", "text")
            with r.pipeline() as p:
                p.incr(P + "{txrt}").set(P + "{txrt}2", "ok")
                res = p.execute(raise_on_error=False)
            true(isinstance(res[0], redis.ResponseError), "first reply %r" % (res[0],))
            eq(res[1], True)
            eq(r.get(P + "{txrt}2"), b"ok")

        self.check("pipeline() is MULTI/EXEC", default_pipeline)
        self.check("WATCH retry loop with a concurrent writer", watch_retry)
        self.check("two threads x 50 r.transaction() increments", watch_threads)
        self.check("a transaction that fails to queue changes nothing", queue_error)
        self.check("an error inside EXEC fails only its command", runtime_error)

    # ------------------------------------------------------------ blocking

    def g_blocking(self):
        r = self.r
        pusher = self.client()

        def woken():
            r.delete(P + "jobs")
            t = threading.Timer(WAKE_AFTER, lambda: pusher.rpush(P + "jobs", "job1"))
            t.start()
            t0 = time.time()
            got = r.blpop([P + "jobs"], timeout=0)
            t.join()
            eq(got, (P.encode() + b"jobs", b"job1"))
            true(time.time() - t0 >= WAKE_AFTER - 0.1, "returned before the push")

        def short_timeout():
            r.delete(P + "empty")
            t0 = time.time()
            eq(r.blpop([P + "empty"], timeout=1), None)
            dt = time.time() - t0
            true(0.9 <= dt < 3, "waited %.2f s" % dt)

        def several_keys():
            r.delete(P + "{q}a", P + "{q}b")
            r.rpush(P + "{q}b", "x")
            eq(r.brpop([P + "{q}a", P + "{q}b"], timeout=1), (P.encode() + b"{q}b", b"x"))

        def reliable_queue():
            # the RQ/Bull style move to a processing list
            r.delete(P + "{q}src", P + "{q}dst")
            t = threading.Timer(0.3, lambda: pusher.rpush(P + "{q}src", "job"))
            t.start()
            got = r.blmove(P + "{q}src", P + "{q}dst", 0, "LEFT", "RIGHT")
            t.join()
            eq(got, b"job")
            eq(r.lrange(P + "{q}dst", 0, -1), [b"job"])

        def others_served():
            # while one client waits, other clients are served
            r.delete(P + "wait")
            res = {}

            def wait():
                try:
                    res["v"] = r.blpop([P + "wait"], timeout=0)
                except Exception as e:
                    res["v"] = e
            t = threading.Thread(target=wait)
            t.start()
            time.sleep(0.2)
            eq(pusher.set(P + "side", "s"), True)
            eq(pusher.get(P + "side"), b"s")
            pusher.rpush(P + "wait", "w")
            t.join(5)
            eq(res.get("v"), (P.encode() + b"wait", b"w"))

        def stream_group():
            # a consumer group worker: XREADGROUP BLOCK woken by an XADD
            st = P + "events"
            r.delete(st)
            r.xgroup_create(st, "workers", id="$", mkstream=True)
            t = threading.Timer(0.3, lambda: pusher.xadd(st, {"job": "7"}))
            t.start()
            got = r.xreadgroup("workers", "w1", {st: ">"}, count=1, block=5000)
            t.join()
            true(got and got[0][0] == st.encode(), "reply %r" % (got,))
            msg_id, fields = got[0][1][0]
            eq(fields, {b"job": b"7"})
            eq(r.xack(st, "workers", msg_id), 1)

        def stream_read():
            st = P + "log"
            r.delete(st)
            first = r.xadd(st, {"n": "1"})
            eq(r.xread({st: "0"}), [[st.encode(), [(first, {b"n": b"1"})]]])

        self.check("BLPOP timeout 0 woken by another client after %.1f s" % WAKE_AFTER, woken)
        self.check("BLPOP with a 1 s timeout returns None", short_timeout)
        self.check("BRPOP over two keys of one hash tag", several_keys)
        self.check("BLMOVE to a processing list", reliable_queue)
        self.check("other clients served while one blocks", others_served)
        self.check("XREADGROUP BLOCK woken by XADD, XACK", stream_group)
        self.check("XREAD without BLOCK", stream_read)

    # ------------------------------------------------------------ pubsub

    def g_pubsub(self):
        sub = self.client()
        pub = self.client(port=self.peer)  # the other proxy
        where = "through a second proxy" if self.peer != self.port else "on one server"
        p = sub.pubsub()

        def next_msg(kind, timeout=5):
            end = time.time() + timeout
            while time.time() < end:
                m = p.get_message(timeout=end - time.time())
                if m and m["type"] == kind:
                    return m
            raise Failed("no %s message within %d s" % (kind, timeout))

        def subscribe():
            p.subscribe(P + "news")
            p.psubscribe(P + "ev.*")
            eq(next_msg("subscribe")["channel"], P.encode() + b"news")
            eq(next_msg("psubscribe")["channel"], P.encode() + b"ev.*")

        def message():
            n = pub.publish(P + "news", "hello")
            true(n >= 1, "PUBLISH counted %r receivers" % n)
            m = next_msg("message")
            eq((m["channel"], m["data"]), (P.encode() + b"news", b"hello"))

        def pmessage():
            pub.publish(P + "ev.login", "bob")
            m = next_msg("pmessage")
            eq((m["pattern"], m["channel"], m["data"]),
               (P.encode() + b"ev.*", P.encode() + b"ev.login", b"bob"))

        def numsub():
            got = dict(pub.pubsub_numsub(P + "news"))
            true(got.get(P.encode() + b"news", 0) >= 1, "NUMSUB %r" % got)

        def ping():
            p.ping()
            next_msg("pong")

        def unsubscribe():
            p.unsubscribe()
            p.punsubscribe()
            next_msg("unsubscribe")
            next_msg("punsubscribe")
            pub.publish(P + "news", "late")
            m = p.get_message(timeout=0.3)
            true(m is None, "message after unsubscribe: %r" % (m,))

        self.check("SUBSCRIBE and PSUBSCRIBE confirmed", subscribe)
        self.check("message published %s" % where, message)
        self.check("pattern message published %s" % where, pmessage)
        self.check("PUBSUB NUMSUB sees the subscriber", numsub)
        self.check("PING while subscribed", ping)
        self.check("UNSUBSCRIBE/PUNSUBSCRIBE, then no more messages", unsubscribe)
        p.close()

    # ------------------------------------------------------------ scan

    def g_scan(self):
        r = self.r
        n = 10000
        want = {("%sscan:%d" % (P, i)).encode() for i in range(n)}

        def fill():
            with r.pipeline(transaction=False) as p:
                for i in range(n):
                    p.set("%sscan:%d" % (P, i), i)
                    if i % 1000 == 999:
                        p.execute()
            for i in range(5):
                r.hset("%sscanh:%d" % (P, i), "f", "v")

        def every_key_once():
            got = [k for k in r.scan_iter(count=1000) if k.startswith(P.encode() + b"scan:")]
            eq(len(got), n, "keys returned")
            eq(len(set(got)), n, "distinct keys")
            true(set(got) == want, "not the keys written")

        def match():
            got = list(r.scan_iter(match=P + "scan:12*", count=1000))
            exp = {k for k in want if k.startswith(P.encode() + b"scan:12")}
            eq(len(got), len(exp), "keys returned")
            true(set(got) == exp, "not the matching keys")

        def type_filter():
            got = sorted(r.scan_iter(match=P + "scan*", _type="hash", count=1000))
            eq(got, [("%sscanh:%d" % (P, i)).encode() for i in range(5)])

        def keys():
            got = r.keys(P + "scan:99*")
            eq(sorted(got), sorted(k for k in want if k.startswith(P.encode() + b"scan:99")))

        def dbsize():
            true(r.dbsize() >= n + 5, "DBSIZE %r" % r.dbsize())

        self.check("%d keys written with a pipeline" % n, fill)
        self.check("scan_iter returns each of %d keys exactly once" % n, every_key_once)
        self.check("scan_iter(match=...)", match)
        self.check("scan_iter(_type='hash')", type_filter)
        self.check("KEYS pattern", keys)
        self.check("DBSIZE counts them", dbsize)

    # ------------------------------------------------------------ scripts

    def g_scripts(self):
        r = self.r
        src_incr = "return redis.call('INCRBY', KEYS[1], ARGV[1])"

        def register():
            r.script_flush()  # so the first call takes the NOSCRIPT path
            r.delete(P + "sc")
            incr_by = r.register_script(src_incr)
            eq(incr_by(keys=[P + "sc"], args=[5]), 5)
            eq(incr_by(keys=[P + "sc"], args=[5]), 10)
            eq(r.script_exists(incr_by.sha), [True])

        def load_exists():
            sha = r.script_load("return ARGV[1]")
            eq(r.script_exists(sha, "0" * 40), [True, False])
            eq(r.evalsha(sha, 0, "x"), b"x")

        def eval_no_keys():
            eq(r.eval("return tonumber(ARGV[1]) * 2", 0, 21), 42)

        def eval_keys():
            r.set(P + "{s}a", "A")
            r.set(P + "{s}b", "B")
            eq(r.eval("return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}",
                      2, P + "{s}a", P + "{s}b"), [b"A", b"B"])

        def functions():
            code = ("#!lua name=pylib\n"
                    "redis.register_function('py_swap', function(keys, args)\n"
                    "  return redis.call('GETSET', keys[1], args[1])\n"
                    "end)")
            eq(r.function_load(code, replace=True), b"pylib")
            r.set(P + "fn", "old")
            eq(r.fcall("py_swap", 1, P + "fn", "new"), b"old")
            eq(r.get(P + "fn"), b"new")
            eq(r.function_delete("pylib"), True)

        self.check("register_script: EVALSHA, NOSCRIPT, SCRIPT LOAD, retry", register)
        self.check("SCRIPT LOAD / SCRIPT EXISTS / EVALSHA", load_exists)
        self.check("EVAL with no keys", eval_no_keys)
        self.check("EVAL with two keys of one hash tag", eval_keys)
        self.check("FUNCTION LOAD / FCALL / FUNCTION DELETE", functions)

    # ------------------------------------------------------------ resp3

    def g_resp3(self):
        if "protocol" not in inspect.signature(redis.Redis.__init__).parameters:
            def unsupported():
                raise Skip("redis-py %s has no protocol= option (RESP3 came in redis-py 5.0)"
                           % redis.__version__)
            self.check("redis-py protocol=3", unsupported)
            return
        r = self.client(protocol=3)

        def basic():
            eq(r.set(P + "r3", "v"), True)
            eq(r.get(P + "r3"), b"v")
            r.hset(P + "r3h", mapping={"a": "1"})
            eq(r.hgetall(P + "r3h"), {b"a": b"1"})

        def tx():
            with r.pipeline() as p:
                p.set(P + "r3t", 1).incr(P + "r3t")
                eq(p.execute(), [True, 2])

        def scan():
            r.set(P + "r3s:1", 1)
            eq(list(r.scan_iter(match=P + "r3s:*")), [P.encode() + b"r3s:1"])

        def blocking():
            r.delete(P + "r3q")
            r.rpush(P + "r3q", "x")
            got = r.blpop([P + "r3q"], timeout=1)
            eq(list(got) if got else got, [P.encode() + b"r3q", b"x"])

        self.check("protocol=3: GET/SET/HGETALL", basic)
        self.check("protocol=3: transaction", tx)
        self.check("protocol=3: scan_iter", scan)
        self.check("protocol=3: BLPOP", blocking)

    # ------------------------------------------------------------ info

    def g_info(self):
        r = self.r

        def sections():
            r.set(P + "info", 1)
            info = r.info()
            for field in ("redis_version", "connected_clients", "used_memory",
                          "total_commands_processed", "instantaneous_ops_per_sec",
                          "total_connections_received"):
                true(field in info, "INFO has no %s" % field)
                true(isinstance(info[field], (int, float, str)), "%s = %r" % (field, info[field]))
            true(info["connected_clients"] >= 1, "connected_clients %r" % info["connected_clients"])
            true(info["used_memory"] > 0, "used_memory %r" % info["used_memory"])
            true(info["total_commands_processed"] > 0, "total_commands_processed")
            true(info.get("db0", {}).get("keys", 0) >= 1, "keyspace db0 %r" % info.get("db0"))

        def section_names():
            for s in ("server", "clients", "memory", "stats", "keyspace"):
                true(len(r.info(s)) > 0, "INFO %s is empty" % s)

        def client_name():
            eq(r.client_setname("py-app"), True)
            eq(r.client_getname(), "py-app")
            names = [c.get("name") for c in r.client_list()]
            true("py-app" in names, "CLIENT LIST names %r" % names)

        def config_get():
            got = r.config_get("maxmemory")
            true("maxmemory" in got, "CONFIG GET maxmemory: %r" % got)

        self.check("INFO: server, clients, memory, stats, keyspace fields", sections)
        self.check("INFO <section> for each section", section_names)
        self.check("CLIENT SETNAME / GETNAME / LIST", client_name)
        self.check("CONFIG GET maxmemory", config_get)


def main(argv):
    host, port, password, peer, groups = "127.0.0.1", 6379, "", None, []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-h", "-p", "-a", "-P") and args:
            v = args.pop(0)
            if a == "-h":
                host = v
            elif a == "-p":
                port = int(v)
            elif a == "-a":
                password = v
            else:
                peer = int(v)
        elif a in GROUPS:
            groups.append(a)
        else:
            print("usage: py_client.py [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP...\n"
                  "groups: " + " ".join(GROUPS), file=sys.stderr)
            return 2
    d = Driver(host, port, password, peer or port)
    print("# redis-py %s against %s:%d" % (redis.__version__, host, port))
    for g in groups:
        print("# group %s" % g)
        try:
            getattr(d, "g_" + g)()
        except Exception as e:  # set-up of a group failed
            d.failed += 1
            print("not ok - group %s: %s: %s" % (g, type(e).__name__, e))
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
