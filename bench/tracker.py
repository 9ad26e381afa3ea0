"""A one-answer HTTP tracker for the benchmark: every announce gets back PEER (host:port).

Usage: tracker.py PORT_FILE PEER_FILE
Writes its port to PORT_FILE; reads the peer to list from PEER_FILE at each announce.
"""
import http.server
import socket
import struct
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            host, port = open(sys.argv[2]).read().strip().rsplit(":", 1)
            peers = socket.inet_aton(host) + struct.pack(">H", int(port))
        except (OSError, ValueError):
            peers = b""
        body = b"d8:intervali60e5:peers%d:%se" % (len(peers), peers)
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # a client that hung up (aria2c on exit) needs no answer

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
