"""A libtorrent downloader over uTP only, for bench/utp_ledbat.sh: downloads TORRENT into SAVE
from PEER, listening on LISTEN_IP (the namespace's address: libtorrent sends uTP from its
listen socket), until it finishes or is killed.

Usage: lt_utp_leech.py TORRENT SAVE PEER_HOST:PORT LISTEN_IP
"""
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import lt_session  # noqa: E402


def main():
    torrent, save, peer, listen_ip = sys.argv[1:5]
    ses = lt_session.session(
        listen_interfaces=f"{listen_ip}:0",
        enable_outgoing_utp=True,
        enable_incoming_utp=True,
        enable_outgoing_tcp=False,
        enable_incoming_tcp=False,
        out_enc_policy=int(lt.enc_policy.disabled),
    )
    h = lt_session.add(ses, save, lt.torrent_info(torrent))
    host, port = peer.rsplit(":", 1)
    last_connect = 0.0
    while True:
        st = h.status()
        if st.num_peers == 0 and time.time() - last_connect > 2:
            h.connect_peer((host, int(port)))
            last_connect = time.time()
        if st.is_seeding:
            return
        time.sleep(0.1)


if __name__ == "__main__":
    main()
