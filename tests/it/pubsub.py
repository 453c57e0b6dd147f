#!/usr/bin/env python3
"""Pub/sub through two kvp of one namespace over three masters (issue 12,
item 3), driven over raw sockets so every byte a client reads is checked:
  python3 tests/it/pubsub.py PROXY_A PROXY_B PASSWORD MASTER1 MASTER2 MASTER3
  python3 tests/it/pubsub.py --move PROXY_A PROXY_B PASSWORD OLD NEW CS_HTTP
  python3 tests/it/pubsub.py --idle PROXY_WITH_CLIENT_TIMEOUT_1 PROXY_B PASSWORD
runs the table-change scenario instead: a master replaced (replace_server
OLD -> NEW), its channels and the patterns follow to the new one.
Prints one "ok - ..." / "FAILED - ..." line per check; exit status 1 when
any failed. Redis's own behaviour is the reference: where a reply's exact
text matters, the same commands are sent to a master directly and compared."""
import socket
import sys
import time

MOVE = sys.argv[1] == "--move"
IDLE = sys.argv[1] == "--idle"
if MOVE or IDLE:
    sys.argv.pop(1)
PA, PB, PW = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
MASTERS = [int(p) for p in sys.argv[4:7]]
failed = 0


def check(what, ok, detail=""):
    global failed
    if ok:
        print("ok - " + what)
    else:
        failed += 1
        print("FAILED - " + what + (": " + str(detail) if detail != "" else ""))
    sys.stdout.flush()


def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """A RESP2 connection; replies parsed into bytes / int / list / Err."""

    def __init__(self, port, password=None):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.raw = b""  # bytes of the last reply read, as they came
        if password:
            assert self.call("AUTH", password) == "OK"

    def send(self, *args):
        self.s.sendall(enc(*args))

    def _fill(self, timeout):
        self.s.settimeout(timeout)
        data = self.s.recv(65536)
        if not data:
            raise EOFError("closed")
        self.buf += data

    def _line(self, timeout):
        while b"\r\n" not in self.buf:
            self._fill(timeout)
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.raw += line + b"\r\n"
        return line

    def read(self, timeout=5.0):
        self.raw = b""
        return self._read(timeout)

    def _read(self, timeout):
        line = self._line(timeout)
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return Err(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill(timeout)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            self.raw += v + b"\r\n"
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(timeout) for _ in range(n)]
        raise ValueError("bad reply %r" % line)

    def call(self, *args):
        self.send(*args)
        return self.read()

    def quiet(self, wait=0.3):
        """Nothing more arrives within wait seconds."""
        try:
            if self.buf:
                return False
            self._fill(wait)
            return False
        except socket.timeout:
            return True

    def close(self):
        self.s.close()


class Err(str):
    pass


def master(i):
    return Conn(MASTERS[i], PW)


def wait_for(pred, secs=5.0):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def move_scenario():
    import json
    import urllib.request
    old, new, cs_http = MASTERS
    A = Conn(PA)
    # channels until one lives on the master that will be replaced
    names = ["mv:%d" % i for i in range(40)]
    A.send("SUBSCRIBE", *names)
    [A.read() for _ in names]
    P = Conn(PA)
    P.send("PSUBSCRIBE", "mv:*")
    P.read()
    m_old = Conn(old, PW)
    on_old = [c.decode() for c in m_old.call("PUBSUB", "CHANNELS", "mv:*")]
    check("some channels live on the master to be replaced", len(on_old) > 0, on_old)
    body = json.dumps({"namespace": "test", "old_addr": "127.0.0.1:%d" % old,
                       "new_addr": "127.0.0.1:%d" % new}).encode()
    rep = urllib.request.urlopen("http://127.0.0.1:%d/kvstore/cs/replace_server" % cs_http, body).read()
    check("replace_server accepted", json.loads(rep).get("code") == 1001, rep)
    m_new = Conn(new, PW)
    check("the channels follow their buckets to the new master",
          wait_for(lambda: sorted(c.decode() for c in m_new.call("PUBSUB", "CHANNELS", "mv:*")) == sorted(on_old), 10),
          m_new.call("PUBSUB", "CHANNELS", "mv:*"))
    check("the pattern is on the new master", wait_for(lambda: m_new.call("PUBSUB", "NUMPAT") == 1, 10))
    check("nothing is left subscribed on the old master",
          wait_for(lambda: m_old.call("PUBSUB", "CHANNELS", "mv:*") == [] and m_old.call("PUBSUB", "NUMPAT") == 0))
    B = Conn(PB)
    n = B.call("PUBLISH", on_old[0], "moved")
    msg = A.read()
    check("a PUBLISH through the other proxy reaches the subscriber on the new master",
          msg == [b"message", on_old[0].encode(), b"moved"] and n == 2, (n, msg))  # channel + pattern
    check("and the pattern subscriber", P.read() == [b"pmessage", b"mv:*", on_old[0].encode(), b"moved"])
    check("the subscribed client still answers", A.call("PING") == [b"pong", b""])
    sys.exit(1 if failed else 0)


def idle_scenario():
    """client_timeout = 1 on PROXY_A: an idle subscriber stays (as in Redis),
    an idle ordinary client is closed."""
    sub = Conn(PA)
    sub.send("SUBSCRIBE", "idle")
    sub.read()
    plain = Conn(PA)
    plain.call("PING")
    time.sleep(3)
    n = Conn(PB).call("PUBLISH", "idle", "still")
    check("an idle subscriber is not closed by client_timeout", n == 1 and sub.read()[2] == b"still", n)
    try:
        plain.call("PING")
        closed = False
    except (EOFError, ConnectionError):
        closed = True
    check("an idle ordinary client is", closed)
    sys.exit(1 if failed else 0)


if MOVE:
    move_scenario()
if IDLE:
    idle_scenario()

# ------------------------------------------------ where each channel lives
A = Conn(PA)
names = ["ch:%d" % i for i in range(60)]
A.send("SUBSCRIBE", *names)
confs = [A.read() for _ in names]
check("SUBSCRIBE of 60 channels: one confirmation each, counts 1..60",
      [c[2] for c in confs] == list(range(1, 61)) and all(c[0] == b"subscribe" for c in confs), confs[:3])
owner = {}
for i in range(3):
    m = master(i)
    for ch in m.call("PUBSUB", "CHANNELS", "ch:*"):
        owner.setdefault(ch.decode(), []).append(i)
    m.close()
check("each channel is subscribed on exactly one master, not prefixed",
      sorted(owner) == sorted(names) and all(len(v) == 1 for v in owner.values()), owner)
per_master = [[c for c in names if owner.get(c) == [i]] for i in range(3)]
check("the channels are spread over the three masters", all(len(p) > 0 for p in per_master),
      [len(p) for p in per_master])
one = [p[0] for p in per_master]  # a channel on each master
A.send("UNSUBSCRIBE")
unsubs = [A.read() for _ in names]
check("UNSUBSCRIBE with no argument: one reply per channel, counts down to 0",
      sorted(u[1].decode() for u in unsubs) == sorted(names) and [u[2] for u in unsubs] == list(range(59, -1, -1)),
      unsubs[:3])
A.send("UNSUBSCRIBE")
check("UNSUBSCRIBE with nothing subscribed: [unsubscribe, nil, 0]", A.read() == [b"unsubscribe", None, 0], A.raw)
check("out of subscribed mode: PING is +PONG", A.call("PING") == "PONG", A.raw)
check("every master-side subscription is gone",
      wait_for(lambda: all(master(i).call("PUBSUB", "NUMSUB", *names)[1::2] == [0] * 60 for i in range(3))))

# ------------------------------------------ SUBSCRIBE on A, PUBLISH on B
B = Conn(PB)
A.send("SUBSCRIBE", *one)
got = [A.read() for _ in one]
check("SUBSCRIBE one channel per master",
      got == [[b"subscribe", c.encode(), i + 1] for i, c in enumerate(one)], got)
for i, ch in enumerate(one):
    n = B.call("PUBLISH", ch, "hello-%d" % i)  # right after the confirmation
    msg = A.read()
    check("PUBLISH on proxy B reaches a subscriber of proxy A (master %d)" % (i + 1),
          msg == [b"message", ch.encode(), b"hello-%d" % i] and n == 1, (n, msg))
check("message bytes are Redis's RESP2 array",
      A.raw == b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$7\r\nhello-2\r\n" % (len(one[2]), one[2].encode()), A.raw)

# subscribed mode: what Redis allows, and its words for the rest
direct = master(0)
direct.call("SUBSCRIBE", "zzz")
want_err = direct.call("GET", "k")
want_ping = (direct.send("PING"), direct.read(), direct.raw)[2]
want_ping_arg = (direct.send("PING", "x"), direct.read(), direct.raw)[2]
direct.close()
err = A.call("GET", "k")
check("a command in subscribed mode gets redis-server's error", isinstance(err, Err) and err == want_err,
      (err, want_err))
err = A.call("PUBSUB", "NUMSUB", "x")
check("PUBSUB NUMSUB in subscribed mode is refused as Redis names it",
      err == "ERR Can't execute 'pubsub|numsub': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", err)
A.send("PING")
A.read()
check("PING in subscribed mode: *2 pong \"\" as redis-server", A.raw == want_ping, A.raw)
A.send("PING", "x")
A.read()
check("PING arg in subscribed mode as redis-server", A.raw == want_ping_arg, A.raw)
check("an arity error stays an arity error in subscribed mode",
      A.call("GET") == "ERR wrong number of arguments for 'get' command", A.raw)

# pub/sub introspection through the proxy, merged over the masters
chans = sorted(x.decode() for x in B.call("PUBSUB", "CHANNELS"))
check("PUBSUB CHANNELS lists the channels of every master", chans == sorted(one), chans)
ns = B.call("PUBSUB", "NUMSUB", one[0], one[1], one[2], "nobody")
check("PUBSUB NUMSUB: each channel counted once, in the order asked",
      ns == [one[0].encode(), 1, one[1].encode(), 1, one[2].encode(), 1, b"nobody", 0], ns)
check("PUBSUB NUMPAT with no pattern: 0", B.call("PUBSUB", "NUMPAT") == 0, B.raw)

# ---------------------------------------------------------- PSUBSCRIBE
P = Conn(PA)
P.send("PSUBSCRIBE", "ch:*")
check("PSUBSCRIBE confirmed", P.read() == [b"psubscribe", b"ch:*", 1], P.raw)
check("PUBSUB NUMPAT: the pattern once (every master has it)", B.call("PUBSUB", "NUMPAT") == 1, B.raw)
for i in range(3):
    m = master(i)
    check("master %d has the pattern" % (i + 1), m.call("PUBSUB", "NUMPAT") == 1)
    m.close()
for i, ch in enumerate(one):
    B.call("PUBLISH", ch, "p%d" % i)
    pm = P.read()
    check("PSUBSCRIBE gets a pmessage from a channel on master %d" % (i + 1),
          pm == [b"pmessage", b"ch:*", ch.encode(), b"p%d" % i], pm)
    A.read()  # A gets it too
P.send("PUNSUBSCRIBE")
check("PUNSUBSCRIBE", P.read() == [b"punsubscribe", b"ch:*", 0], P.raw)
check("the pattern leaves every master",
      wait_for(lambda: all(master(i).call("PUBSUB", "NUMPAT") == 0 for i in range(3))))

# -------------------------------------------------- SSUBSCRIBE / SPUBLISH
S = Conn(PA)
S.send("SSUBSCRIBE", *one)
got = [S.read() for _ in one]
check("SSUBSCRIBE: counts are the shard channels'", [g[2] for g in got] == [1, 2, 3], got)
S.send("SUBSCRIBE", "plain")
check("SUBSCRIBE after SSUBSCRIBE counts channels apart", S.read() == [b"subscribe", b"plain", 1], S.raw)
for i, ch in enumerate(one):
    n = B.call("SPUBLISH", ch, "s%d" % i)
    sm = S.read()
    check("SPUBLISH reaches an SSUBSCRIBEr (master %d)" % (i + 1),
          sm == [b"smessage", ch.encode(), b"s%d" % i] and n == 1, (n, sm))
check("a PUBLISH does not reach a shard subscriber", B.call("PUBLISH", one[0], "x") == 1 and S.quiet())
A.read()
sc = sorted(x.decode() for x in B.call("PUBSUB", "SHARDCHANNELS"))
check("PUBSUB SHARDCHANNELS", sc == sorted(one), sc)
check("PUBSUB SHARDNUMSUB", B.call("PUBSUB", "SHARDNUMSUB", one[1]) == [one[1].encode(), 1], B.raw)
S.send("SUNSUBSCRIBE", one[0], "nope")
check("SUNSUBSCRIBE: a reply per name, subscribed or not",
      [S.read(), S.read()] == [[b"sunsubscribe", one[0].encode(), 2], [b"sunsubscribe", b"nope", 2]])
check("RESET leaves subscribed mode", S.call("RESET") == "RESET" and S.call("PING") == "PONG", S.raw)
check("after RESET the shard channels are gone from the masters",
      wait_for(lambda: B.call("PUBSUB", "SHARDNUMSUB", one[1], one[2]) == [one[1].encode(), 0, one[2].encode(), 0]))

# ---------------------------------------------------- MULTI, disconnects
T = Conn(PA)
T.call("MULTI")
err = T.call("SUBSCRIBE", "x")
check("SUBSCRIBE inside MULTI is refused (a transaction runs on one master)", isinstance(err, Err), err)
T.call("DISCARD")
T.call("CLIENT", "SETNAME", "named")
T.call("MULTI")
check("RESET inside MULTI is run at once", T.call("RESET") == "RESET", T.raw)
check("  and ends the transaction", T.call("EXEC") == "ERR EXEC without MULTI", T.raw)
check("  and the client's name", T.call("CLIENT", "GETNAME") is None, T.raw)
T.close()

A.close()
check("a client that disconnects drops its subscriptions on the masters",
      wait_for(lambda: all(master(i).call("PUBSUB", "NUMSUB", one[i])[1] == 0 for i in range(3))))

# two proxies: each has its own subscriber connection; both get the message
A2 = Conn(PA)
B2 = Conn(PB)
A2.send("SUBSCRIBE", one[1])
B2.send("SUBSCRIBE", one[1])
A2.read()
B2.read()
m1 = master(1)
check("the master sees one subscriber per proxy", m1.call("PUBSUB", "NUMSUB", one[1])[1] == 2, m1.raw)
n = Conn(PA).call("PUBLISH", one[1], "both")
check("a PUBLISH reaches the subscribers of both proxies",
      n == 2 and A2.read()[2] == b"both" and B2.read()[2] == b"both", n)

# ------------------------------------------- a subscriber connection killed
killed = m1.call("CLIENT", "KILL", "TYPE", "pubsub")
check("CLIENT KILL TYPE pubsub on the master killed the proxies' connections", killed >= 2, killed)
check("the proxies subscribe again",
      wait_for(lambda: m1.call("PUBSUB", "NUMSUB", one[1])[1] == 2, 10))
n = Conn(PB).call("PUBLISH", one[1], "again")
check("messages flow again after the reconnect",
      n == 2 and A2.read()[2] == b"again" and B2.read()[2] == b"again", n)
A2.close()
B2.close()

# ----------------------------------------------- 1000 subscribed clients
many = []
for i in range(1000):
    c = Conn(PA)
    c.send("SUBSCRIBE", "fan:%d" % (i % 10), "fan:all")
    many.append(c)
ok = True
for c in many:
    r1, r2 = c.read(), c.read()
    ok &= r1[0] == b"subscribe" and r2 == [b"subscribe", b"fan:all", 2]
check("1000 clients subscribed", ok)
pubsub_conns = 0
all_conns = 0
for i in range(3):
    m = master(i)
    pubsub_conns += len([l for l in m.call("CLIENT", "LIST", "TYPE", "pubsub").split(b"\n") if l.strip()])
    all_conns += len([l for l in m.call("CLIENT", "LIST").split(b"\n") if l.strip()])
    m.close()
check("1000 subscribers use a handful of master connections (%d pub/sub, %d in all on 3 masters)"
      % (pubsub_conns, all_conns), pubsub_conns <= 3 * 4 and all_conns <= 40, (pubsub_conns, all_conns))
n = B.call("PUBLISH", "fan:all", "to-all")
ok = all(c.read() == [b"message", b"fan:all", b"to-all"] for c in many)
check("a message reaches all 1000 subscribers", ok, n)
B.call("PUBLISH", "fan:3", "to-100")
got = sum(1 for c in many[3::10] if c.read() == [b"message", b"fan:3", b"to-100"])
check("a message reaches exactly its channel's 100 subscribers", got == 100 and many[4].quiet(0.2), got)
for c in many:
    c.close()
check("1000 clients gone: no subscription left on the masters",
      wait_for(lambda: sum(master(i).call("PUBSUB", "NUMSUB", "fan:all")[1] for i in range(3)) == 0, 10))

# ------------------------------------- a master slow to confirm (paused)
W = Conn(PA)
m0 = master(0)
m0.call("CLIENT", "PAUSE", "2500", "ALL")
t0 = time.time()
W.send("SUBSCRIBE", per_master[0][1])
conf = W.read(10)
took = time.time() - t0
check("a confirmation the master does not give within request_timeout is given anyway (%.1fs)" % took,
      conf == [b"subscribe", per_master[0][1].encode(), 1] and 0.8 < took < 2.4, (conf, took))
time.sleep(2.6 - took)
check("once the master answers, messages flow",
      wait_for(lambda: master(0).call("PUBSUB", "NUMSUB", per_master[0][1])[1] == 1) and
      B.call("PUBLISH", per_master[0][1], "late") == 1 and W.read()[2] == b"late")
W.close()
m0.close()

# ---------------------- a subscriber that does not read: output limits
SL = Conn(PA)
SL.send("SUBSCRIBE", "slow")
SL.read()
SL.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
big = "x" * 65536
for _ in range(400):
    B.send("PUBLISH", "slow", big)
for _ in range(400):
    B.read()
check("a subscriber that does not read is closed at client_output_hard_mb, and its subscription dropped",
      wait_for(lambda: master(0).call("PUBSUB", "NUMSUB", "slow")[1] + master(1).call("PUBSUB", "NUMSUB", "slow")[1]
               + master(2).call("PUBSUB", "NUMSUB", "slow")[1] == 0, 10))
SL.close()

sys.exit(1 if failed else 0)
