#!/usr/bin/env python3
"""python3 tests/it/resp3_sub.py PORT: a RESP3 client subscribes through the
proxy, another client publishes, and the subscriber runs GET while
subscribed (RESP3 allows it): the exact bytes are checked."""
import socket
import sys
import time

port = int(sys.argv[1])
failed = 0


def check(what, ok, detail=""):
    global failed
    print(("ok - " if ok else "FAILED - ") + what + ("" if ok else ": " + detail))
    failed += 0 if ok else 1


def read_until(s, want, timeout=3.0):
    s.settimeout(0.1)
    buf = b""
    end = time.time() + timeout
    while want not in buf and time.time() < end:
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        except socket.timeout:
            pass
    return buf


sub = socket.create_connection(("127.0.0.1", port))
sub.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
hello = read_until(sub, b"modules")
check("HELLO 3 answers a map", hello.startswith(b"%7\r\n"), repr(hello[:20]))
sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
conf = read_until(sub, b":1\r\n")
check("the subscribe confirmation is a push", conf == b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n", repr(conf))
pub = socket.create_connection(("127.0.0.1", port))
pub.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
read_until(pub, b"\r\n")
msg = read_until(sub, b"hello\r\n")
check("the message is a push", msg == b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n", repr(msg))
sub.sendall(b"*2\r\n$3\r\nGET\r\n$6\r\nnokey9\r\n")
got = read_until(sub, b"_\r\n")
check("GET while subscribed answers (RESP3 null)", got == b"_\r\n", repr(got))
sub.sendall(b"*1\r\n$4\r\nPING\r\n")
got = read_until(sub, b"PONG\r\n")
check("PING while subscribed: +PONG (RESP3)", got == b"+PONG\r\n", repr(got))

# a connection of the client's own (kept from a blocking command) speaks the
# protocol it was made in: HELLO switching gives it back, so the next
# replies come in the new protocol
c = socket.create_connection(("127.0.0.1", port))
c.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
read_until(c, b"modules")
c.sendall(b"*4\r\n$4\r\nHSET\r\n$4\r\n{x}h\r\n$1\r\nf\r\n$1\r\nv\r\n")
read_until(c, b"\r\n")
c.sendall(b"*3\r\n$5\r\nBLPOP\r\n$6\r\n{x}nol\r\n$4\r\n0.01\r\n")
got = read_until(c, b"_\r\n")
check("BLPOP timing out in RESP3: null", got == b"_\r\n", repr(got))
c.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n")
read_until(c, b"modules\r\n*0\r\n")
c.sendall(b"*2\r\n$7\r\nHGETALL\r\n$4\r\n{x}h\r\n")
got = read_until(c, b"v\r\n")
check("after HELLO 2, a reply of that master is RESP2 again", got == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", repr(got))
c.sendall(b"*2\r\n$5\r\nWATCH\r\n$4\r\n{x}h\r\n")
read_until(c, b"OK\r\n")
c.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
got = read_until(c, b"\r\n")
check("HELLO 3 while WATCHing: refused (the watched connection cannot switch)",
      got.startswith(b"-ERR proxy: HELLO cannot switch"), repr(got))
c.sendall(b"*1\r\n$7\r\nUNWATCH\r\n")
read_until(c, b"OK\r\n")
c.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
read_until(c, b"modules")
c.sendall(b"*2\r\n$7\r\nHGETALL\r\n$4\r\n{x}h\r\n")
got = read_until(c, b"v\r\n")
check("after UNWATCH and HELLO 3: a map", got == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", repr(got))
print("all passed" if failed == 0 else "%d failed" % failed)
