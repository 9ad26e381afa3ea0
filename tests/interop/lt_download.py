"""Download one torrent (or magnet link) with libtorrent from peers given on the command line.

Usage: lt_download.py (--torrent FILE | --magnet URI) --save DIR --peer HOST:PORT [--peer ...]
                      [--timeout SECONDS] [--transport tcp|utp|both] [--encryption disabled|forced]
Prints one JSON line {"ok": bool, "state", "progress", "seconds", "first_piece", "bytes"}; exits 0 only when the
download completed (libtorrent checked every piece), 1 otherwise. Only loopback peers are given,
DHT, LSD, UPnP and NAT-PMP are off, so nothing leaves the machine; uTP only when asked.
"""
import argparse
import collections
import json
import sys
import time

import libtorrent as lt
import lt_session


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--torrent")
    p.add_argument("--magnet")
    p.add_argument("--save", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--timeout", type=float, default=120)
    # As qBittorrent and Deluge run it: uTP first and encryption preferred, instead of the
    # plain TCP the tests otherwise ask for.
    p.add_argument("--client-defaults", action="store_true")
    # How to reach the peers: TCP only (the default), uTP only, or both (uTP first).
    p.add_argument("--transport", choices=["tcp", "utp", "both"], default="tcp")
    # Encryption: off (the default), or forced RC4 (MSE) in both directions, refusing plain.
    p.add_argument("--encryption", choices=["disabled", "forced"], default="disabled")
    a = p.parse_args()

    extra = {}
    if a.client_defaults:
        extra = {
            "enable_outgoing_utp": True,
            "enable_incoming_utp": True,
            "out_enc_policy": int(lt.enc_policy.enabled),
        }
    settings = {
        # Plain BitTorrent from the first try: with encryption enabled, libtorrent first
        # sends an MSE handshake and reconnects in plain after the refusal, which only
        # delays tests and benchmarks.
        "out_enc_policy": int(lt.enc_policy.disabled),
        # Loopback peers are our only peers: never filter them.
        "allow_multiple_connections_per_ip": True,
        # Peer, tracker and error events are kept (the last few hundred) and printed on
        # failure, so a failed download says what libtorrent saw.
        "alert_mask": int(
            lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.error_notification
            | lt.alert.category_t.tracker_notification
            # piece_finished_alert: when the first piece came, to the alert, not to a poll.
            | lt.alert_category.piece_progress
        ),
    }
    settings.update(extra)
    if a.transport != "tcp":
        settings.update(
            {
                "enable_outgoing_utp": True,
                "enable_incoming_utp": True,
                "enable_outgoing_tcp": a.transport == "both",
                "enable_incoming_tcp": a.transport == "both",
            }
        )
    if a.encryption == "forced":
        settings.update(lt_session.RC4_FORCED)
    ses = lt_session.session(**settings)
    events = collections.deque(maxlen=400)
    # Why each connection ended, in order (also on success: tests read how libtorrent got in).
    disconnects = []
    if a.magnet:
        h = lt_session.add(ses, a.save, params=lt.parse_magnet_uri(a.magnet))
    else:
        h = lt_session.add(ses, a.save, lt.torrent_info(a.torrent))
    peers = []
    for peer in a.peer:
        host, port = peer.rsplit(":", 1)
        peers.append((host, int(port)))
    for peer in peers:
        h.connect_peer(peer)

    start = time.time()
    last_connect = start
    ok = False
    # When the first piece was complete, from the start and from the first connection to a
    # peer: how long the seeder took to warm up, without the client's own wait before it
    # connects (libtorrent acts on connect_peer at its next tick, up to 0.5 s later).
    first_piece = None
    connected = None
    after_connect = None
    while time.time() - start < a.timeout:
        st = h.status()
        if st.is_seeding or (st.has_metadata and st.is_finished and st.progress >= 1.0):
            ok = True
            break
        # Re-offer the peers now and then: a connection refused before the seed listened, or
        # dropped, is not retried by libtorrent on its own without a tracker.
        if time.time() - last_connect > 2 and st.num_peers == 0:
            for peer in peers:
                h.connect_peer(peer)
            last_connect = time.time()
        for alert in ses.pop_alerts():
            now = time.time()
            events.append("%.3f %s: %s" % (now - start, alert.what(), alert.message()))
            if isinstance(alert, lt.peer_disconnected_alert):
                disconnects.append(alert.message())
            elif isinstance(alert, (lt.peer_connect_alert, lt.incoming_connection_alert)):
                connected = connected or now
            elif isinstance(alert, lt.piece_finished_alert) and first_piece is None:
                first_piece = now - start
                after_connect = now - (connected or start)
                # One alert per piece from here on would only cost the download CPU.
                ses.apply_settings({"alert_mask": settings["alert_mask"] & ~int(lt.alert_category.piece_progress)})
        # Woken by the next alert, so the first piece's time is the alert's to about 1 ms.
        ses.wait_for_alert(50)
    if not ok:
        for alert in ses.pop_alerts():
            events.append("%.3f %s: %s" % (time.time() - start, alert.what(), alert.message()))
        print("\n".join(events), file=sys.stderr)
    st = h.status()
    print(
        json.dumps(
            {
                "ok": ok,
                "state": str(st.state),
                "progress": st.progress,
                "seconds": time.time() - start,
                "first_piece": first_piece,
                "first_piece_after_connect": after_connect,
                "bytes": st.total_wanted_done,
                # For a failure's diagnosis: who we were connected to and what the trackers said.
                "peers": st.num_peers,
                "disconnects": disconnects[:20],
                "trackers": [
                    {"url": t.get("url"), "message": str(t.get("message", ""))} for t in h.trackers()
                ],
            }
        ),
        flush=True,
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
