"""Holds N idle peer-wire connections to a seeder: each handshakes for one info hash, then sends
only keep-alives. Connections come from ADDRS loopback addresses (127.0.1.1, 127.0.1.2, ...), so
per-address caps are not what stops them. A closed connection is opened again a second later,
as a stubborn client would. Runs until SECONDS have passed; prints how many were open at the
end.

    python3 bench/idle_peers.py HOST:PORT INFO_HASH_HEX N ADDRS SECONDS
"""

import selectors
import socket
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
info_hash = bytes.fromhex(sys.argv[2])
n, addrs, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

HANDSHAKE = (
    bytes([19]) + b"BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04]) + info_hash
    + b"-ID0001-idleidleidle"
)
sel = selectors.DefaultSelector()
socks = {}
# Connections closed by the server, to open again at a time.
again = []


def open_one(i):
    s = socket.socket()
    s.setblocking(False)
    s.bind((f"127.0.1.{1 + i % addrs}", 0))
    try:
        s.connect((host, int(port)))
    except BlockingIOError:
        pass
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    socks[i] = [s, False]


def close_one(i):
    s, _ = socks.pop(i)
    try:
        sel.unregister(s)
    except (KeyError, ValueError):
        pass
    s.close()
    again.append((time.time() + 1.0, i))


for i in range(n):
    open_one(i)
end = time.time() + seconds
last_keepalive = time.time()
while time.time() < end:
    for key, events in sel.select(timeout=1.0):
        i = key.data
        s, sent = socks[i]
        if events & selectors.EVENT_WRITE and not sent:
            try:
                s.send(HANDSHAKE)
                socks[i][1] = True
                sel.modify(s, selectors.EVENT_READ, i)
            except OSError:
                close_one(i)
            continue
        if events & selectors.EVENT_READ:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                close_one(i)
    if time.time() - last_keepalive > 30:
        last_keepalive = time.time()
        for i, (s, sent) in list(socks.items()):
            if sent:
                try:
                    s.send(b"\0\0\0\0")
                except OSError:
                    close_one(i)
    due = [x for x in again if x[0] <= time.time()]
    again = [x for x in again if x[0] > time.time()]
    for _, i in due:
        open_one(i)
print(sum(1 for s, sent in socks.values() if sent))
