"""Two libtorrent peers that each know only one seed (no tracker, no DHT): do they find each
other through the seed's peer exchange (BEP 11) and trade pieces?

Usage: lt_pex.py --torrent FILE --seed HOST:PORT --save DIR [--timeout SECONDS]
Runs peer A on 127.0.0.2 and peer B on 127.0.0.3, each told only of the seed. Prints one JSON
line {"ok", "a": {...}, "b": {...}}: per peer, whether it completed, the peers it learned by
PEX, and the bytes it downloaded from the other peer. Exits 0 only when both completed.
"""
import argparse
import json
import os
import sys
import time

import libtorrent as lt
import lt_session


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torrent", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--save", required=True)
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    host, port = a.seed.rsplit(":", 1)
    seed = (host, int(port))

    peers = {}
    for name, ip in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        ses = lt_session.session(
            listen_interfaces="%s:0" % ip,
            outgoing_interfaces=ip,
            out_enc_policy=int(lt.enc_policy.disabled),
            allow_multiple_connections_per_ip=True,
        )
        h = lt_session.add(ses, os.path.join(a.save, name), lt.torrent_info(a.torrent))
        h.connect_peer(seed)
        peers[name] = {"ses": ses, "h": h, "ip": ip, "pex": set(), "from_other": 0}

    start = time.time()
    last_connect = start
    ok = False
    while time.time() - start < a.timeout:
        done = True
        for name, p_ in peers.items():
            other = peers["b" if name == "a" else "a"]
            h = p_["h"]
            for info in h.get_peer_info():
                if info.source & lt.peer_info.pex:
                    p_["pex"].add("%s:%d" % (info.ip[0], info.ip[1]))
                if info.ip[0] == other["ip"]:
                    p_["from_other"] = max(p_["from_other"], info.total_download)
            st = h.status()
            if not st.is_seeding:
                done = False
            # The seed is re-offered now and then (a refused first connection is not retried
            # by libtorrent without a tracker).
            if time.time() - last_connect > 2 and st.num_peers == 0:
                h.connect_peer(seed)
        if time.time() - last_connect > 2:
            last_connect = time.time()
        if done:
            ok = True
            break
        time.sleep(0.1)
    out = {"ok": ok}
    for name, p_ in peers.items():
        st = p_["h"].status()
        out[name] = {
            "done": st.is_seeding,
            "progress": st.progress,
            "pex": sorted(p_["pex"]),
            "from_other": p_["from_other"],
        }
    print(json.dumps(out), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
