"""One libtorrent download from one peer with every alert on, printed as a timeline (seconds from
the start) until a few pieces after the first: where the first piece's time goes, message by
message (connect, MSE, handshake, interest, unchoke, requests).

Usage: bench/lt_trace.py TORRENT SAVE HOST:PORT [--transport tcp|utp] [--encryption disabled|forced]
                         [--all] [--pieces 3]
--all prints block-level lines too (requests, pieces, writes); by default they are left out.
Two 40 ms stalls were found this way: a delayed ACK against libtorrent's Nagle, once in MSE and
once over uTP (README, "Benchmark").
"""
import argparse
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import lt_session  # noqa: E402

# Block-level lines: hundreds per piece.
NOISE = ("REQUEST", "PIECE", "block_finished", "FILE_ASYNC", "ASYNC_READ", "SYNC_READ", "decrypted block")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("torrent")
    p.add_argument("save")
    p.add_argument("peer")
    p.add_argument("--transport", choices=["tcp", "utp"], default="tcp")
    p.add_argument("--encryption", choices=["disabled", "forced"], default="disabled")
    p.add_argument("--all", action="store_true")
    p.add_argument("--pieces", type=int, default=3)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()

    settings = {"alert_mask": int(lt.alert.category_t.all_categories),
                "out_enc_policy": int(lt.enc_policy.disabled)}
    if a.encryption == "forced":
        settings.update(lt_session.RC4_FORCED)
    if a.transport == "utp":
        settings.update(enable_outgoing_utp=True, enable_incoming_utp=True,
                        enable_outgoing_tcp=False, enable_incoming_tcp=False)
    ses = lt_session.session(**settings)
    h = lt_session.add(ses, a.save, lt.torrent_info(a.torrent))
    host, port = a.peer.rsplit(":", 1)
    start = time.time()
    h.connect_peer((host, int(port)))
    pieces = 0
    while time.time() - start < a.timeout and pieces < a.pieces:
        ses.wait_for_alert(100)
        for al in ses.pop_alerts():
            msg = al.message()
            if isinstance(al, lt.piece_finished_alert):
                pieces += 1
            elif not a.all and any(n in msg for n in NOISE):
                continue
            print(f"{time.time() - start:7.3f} {al.what()}: {msg[:200]}")
    if pieces == 0:
        print("no piece arrived", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
