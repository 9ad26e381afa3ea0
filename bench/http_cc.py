"""An HTTP file server whose connections use a given TCP congestion control, for
bench/utp_ledbat.sh (the machine's default may be BBR, which does not back off on loss as the
CUBIC of most web servers does). Setting it per socket needs CAP_NET_ADMIN (root).

Usage: http_cc.py HOST PORT CONGESTION_CONTROL DIR
"""
import functools
import http.server
import socket
import sys


class Server(http.server.ThreadingHTTPServer):
    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, sys.argv[3].encode())
        return sock, addr


handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[4])
Server((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
