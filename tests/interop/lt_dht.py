"""libtorrent on a loopback DHT whose only contact is bitseed's node: no tracker, no peers given.

Usage: lt_dht.py --bootstrap HOST:PORT --listen IP [--magnet URI --save DIR] [--lookup HEX ...]
                 [--timeout SECONDS]
With --magnet, downloads it (libtorrent checks every piece) with peers found over the DHT only.
With --lookup, asks the DHT for peers of each hash (get_peers) and reports the replies.
Prints one JSON line: {"ok", "announces": [[hash, ip, port]], "lookups": {hash: [[ip, port]]}
(the node's first answer per hash),
"peers_from_dht", ...}; exits 0 only when the download (if any) completed and every lookup got
a reply. The DHT knows only the given bootstrap node (loopback), so nothing leaves the machine.
"""
import argparse
import collections
import json
import sys
import time

import libtorrent as lt
import lt_session


def dht_settings(listen, bootstrap):
    return {
        "listen_interfaces": "%s:0" % listen,
        "outgoing_interfaces": listen,
        "enable_dht": True,
        "dht_bootstrap_nodes": bootstrap,
        # Every node of this DHT is on 127.0.0.0/8: libtorrent's defenses against a crowd of
        # nodes from one network (and against ids not tied to a global address) would refuse
        # them all.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_aggressive_lookups": True,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "allow_multiple_connections_per_ip": True,
        # A connection that drops early is retried within the test's time (libtorrent waits
        # 60 s by default); one drop under a loaded CI machine failed the test once.
        "min_reconnect_time": 2,
        "alert_mask": int(
            lt.alert.category_t.dht_notification
            | lt.alert.category_t.dht_operation_notification
            | lt.alert.category_t.dht_log_notification
            | lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
        ),
    }


def watch_packet(alert, node, asked, lookups):
    """Reads libtorrent's DHT packet log: our get_peers to `node`, and its answers to them."""
    msg = alert.message()
    outgoing = msg.startswith("==>")
    if ("[%s]" % node) not in msg:
        return
    try:
        pkt = lt.bdecode(bytes(alert.pkt_buf))
    except Exception:
        return
    if not isinstance(pkt, dict):
        return
    tid = pkt.get(b"t")
    if outgoing and pkt.get(b"q") == b"get_peers":
        asked[tid] = pkt[b"a"][b"info_hash"].hex()
    elif not outgoing and pkt.get(b"y") == b"r" and tid in asked:
        values = pkt[b"r"].get(b"values", [])
        # The first answer per hash: later ones also list the peers that announced since
        # (libtorrent itself, once it has asked), which lookups repeated on a slow run would
        # record instead.
        lookups.setdefault(asked.pop(tid), [
            ["%d.%d.%d.%d" % tuple(v[:4]), int.from_bytes(v[4:6], "big")] for v in values
        ])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--listen", default="127.0.0.2")
    p.add_argument("--magnet")
    p.add_argument("--save")
    p.add_argument("--lookup", action="append", default=[])
    # Wait (within the timeout) until the DHT node announced each of these hashes to us.
    p.add_argument("--expect-announce", action="append", default=[])
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()

    ses = lt_session.session(**dht_settings(a.listen, a.bootstrap))
    events = collections.deque(maxlen=400)
    announces = []
    # What the bootstrap node itself answered to our get_peers, per hash: its `values`.
    lookups = {}
    # Our get_peers to it in flight: transaction id -> info hash.
    asked = {}
    h = None
    if a.magnet:
        params = lt.parse_magnet_uri(a.magnet)
        params.save_path = a.save
        params.flags &= ~lt.torrent_flags.auto_managed
        params.flags &= ~lt.torrent_flags.paused
        h = ses.add_torrent(params)

    start = time.time()
    last_ask = 0
    last_announce = 0
    ok = False
    while time.time() - start < a.timeout:
        for alert in ses.pop_alerts():
            events.append("%.3f %s: %s" % (time.time() - start, alert.what(), alert.message()))
            if isinstance(alert, lt.dht_announce_alert):
                announces.append([str(alert.info_hash), str(alert.ip), alert.port])
            if isinstance(alert, lt.dht_pkt_alert):
                watch_packet(alert, a.bootstrap, asked, lookups)
        # Ask again now and then until each lookup has an answer (the first may run before
        # the bootstrap node answered).
        if a.lookup and time.time() - last_ask > 2:
            for hx in a.lookup:
                if hx not in lookups:
                    ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(hx)))
            last_ask = time.time()
        done_download = True
        if h is not None:
            st = h.status()
            # Announce (get_peers, then announce_peer) now rather than at libtorrent's first
            # DHT round, which may be minutes away; again while no peer is found.
            if st.num_peers == 0 and time.time() - last_announce > 3:
                h.force_dht_announce()
                last_announce = time.time()
            done_download = st.is_seeding or (
                st.has_metadata and st.is_finished and st.progress >= 1.0
            )
        announced = {x[0] for x in announces}
        if (
            done_download
            and all(hx in lookups for hx in a.lookup)
            and all(hx in announced for hx in a.expect_announce)
        ):
            ok = True
            break
        time.sleep(0.05)
    for alert in ses.pop_alerts():
        events.append("%.3f %s: %s" % (time.time() - start, alert.what(), alert.message()))
        if isinstance(alert, lt.dht_announce_alert):
            announces.append([str(alert.info_hash), str(alert.ip), alert.port])
    if not ok:
        print("\n".join(events), file=sys.stderr)
    out = {"ok": ok, "announces": announces, "lookups": lookups}
    if h is not None:
        st = h.status()
        out.update(
            {
                "progress": st.progress,
                "bytes": st.total_wanted_done,
                "peers": [[p.ip[0], p.ip[1]] for p in h.get_peer_info()],
            }
        )
    print(json.dumps(out), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
