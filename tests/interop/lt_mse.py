"""libtorrent connecting to a peer with MSE forced, to test bitseed's MSE receiver.

Usage: lt_mse.py --port PORT --level rc4|plaintext|both [--timeout SECONDS]
Makes a v1 torrent of one 64 KiB file (its hashes never checked: nothing is downloaded), prints
{"info_hash": HEX} (the listener looks the torrent up by it), connects to 127.0.0.1:PORT with
out_enc_policy = forced and allowed_enc_level = LEVEL, then prints one JSON line once the peer
has finished the BitTorrent handshake, or at the timeout: {"ok", "rc4", "plaintext",
"events"}. Exits 0 only when the handshake finished. Loopback only, uTP off (lt_session).
"""
import argparse
import json
import sys
import tempfile
import time

import libtorrent as lt
import lt_session


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--level", choices=["rc4", "plaintext", "both"], required=True)
    p.add_argument("--timeout", type=float, default=20)
    a = p.parse_args()

    level = {"rc4": lt.enc_level.rc4, "plaintext": lt.enc_level.plaintext, "both": lt.enc_level.both}
    ses = lt_session.session(
        out_enc_policy=int(lt.enc_policy.forced),
        in_enc_policy=int(lt.enc_policy.forced),
        allowed_enc_level=int(level[a.level]),
        prefer_rc4=True,
        alert_mask=int(lt.alert.category_t.peer_notification | lt.alert.category_t.error_notification),
    )
    fs = lt.file_storage()
    fs.add_file("mse/data.bin", 65536)
    ct = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v1_only)
    for i in range(ct.num_pieces()):
        ct.set_hash(i, b"\x01" * 20)  # an all-zero hash counts as unset
    ti = lt.torrent_info(lt.bencode(ct.generate()))
    print(json.dumps({"info_hash": str(ti.info_hashes().v1)}), flush=True)

    with tempfile.TemporaryDirectory(prefix="lt_mse.") as save:
        ok = handshake(ses, ti, save, a.port, a.timeout)
    sys.exit(0 if ok else 1)


def handshake(ses, ti, save, port, timeout):
    """Connects to the peer, prints the result line; whether the handshake finished."""
    h = lt_session.add(ses, save, ti)
    h.connect_peer(("127.0.0.1", port))

    events = []
    result = {"ok": False, "rc4": False, "plaintext": False}
    start = time.time()
    while time.time() - start < timeout and not result["ok"]:
        for peer in h.get_peer_info():
            if peer.flags & (lt.peer_info.handshake | lt.peer_info.connecting):
                continue
            result = {
                "ok": True,
                "rc4": bool(peer.flags & lt.peer_info.rc4_encrypted),
                "plaintext": bool(peer.flags & lt.peer_info.plaintext_encrypted),
                "client": peer.client.decode(errors="replace")
                if isinstance(peer.client, bytes)
                else str(peer.client),
            }
        for alert in ses.pop_alerts():
            events.append("%.3f %s: %s" % (time.time() - start, alert.what(), alert.message()))
        time.sleep(0.05)
    result["events"] = events[-20:]
    print(json.dumps(result), flush=True)
    ses.remove_torrent(h)
    return result["ok"]


if __name__ == "__main__":
    main()
