"""Download one torrent with libtorrent from the peers its trackers give, rate-limited, and say
who sent what: for the cluster tests (several bitseed nodes, each listing every node's seeder).

Usage: lt_cluster.py --torrent FILE --save DIR [--rate BYTES_PER_S] [--timeout SECONDS]
Prints a JSON line every quarter second {"progress", "peers": {"ip:port": bytes}} (bytes received
from each peer so far, kept after it disconnects), then a last one with "ok": exits 0 only when
the download completed (libtorrent checked every piece). Loopback only, TCP only.
"""
import argparse
import json
import sys
import time

import libtorrent as lt
import lt_session


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torrent", required=True)
    p.add_argument("--save", required=True)
    p.add_argument("--rate", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    ses = lt_session.session(
        out_enc_policy=int(lt.enc_policy.disabled),
        # Every node's seeder is on 127.0.0.1: all of them, not the first only.
        allow_multiple_connections_per_ip=True,
        download_rate_limit=a.rate,
        # Loopback is a "local network": the limit would not apply there otherwise.
        ignore_limits_on_local_network=False,
        # A tracker that stops answering (a node killed) is left for the next one soon.
        tracker_completion_timeout=5,
        tracker_receive_timeout=3,
        min_reconnect_time=1,
        alert_mask=int(lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification),
    )
    h = lt_session.add(ses, a.save, lt.torrent_info(a.torrent))
    received = {}
    start = time.time()
    ok = False
    events = []
    while time.time() - start < a.timeout:
        for peer in h.get_peer_info():
            key = "%s:%d" % (peer.ip[0], peer.ip[1])
            received[key] = max(received.get(key, 0), peer.total_download)
        st = h.status()
        # (While libtorrent checks files at the start, `progress` is the check's.)
        if st.state in (lt.torrent_status.seeding, lt.torrent_status.finished):
            ok = True
            break
        for alert in ses.pop_alerts():
            events.append("%.3f %s: %s" % (time.time() - start, alert.what(), alert.message()))
        print(json.dumps({"progress": st.progress, "peers": received}), flush=True)
        time.sleep(0.25)
    if not ok:
        print("\n".join(events[-200:]), file=sys.stderr)
    st = h.status()
    print(json.dumps({"ok": ok, "progress": st.progress, "peers": received,
                      "seconds": time.time() - start}), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
