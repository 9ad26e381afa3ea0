"""Announce one info hash to a tracker from a libtorrent session and report what it heard.

Usage: lt_announce.py TRACKER_URL INFO_HASH_HEX
Prints one JSON line {"num_peers": N, "error": str|null, "listen_port": P}, then stays in the
swarm until its standard input closes (so another session can get it back from the tracker).
One session per process: libtorrent caches UDP connection IDs per tracker across the sessions
of a process, and a tracker rightly refuses an ID issued to another port.
"""
import json
import sys
import tempfile
import time

import libtorrent as lt
import lt_session


def main():
    url, info_hash = sys.argv[1], sys.argv[2]
    ses = lt_session.session(
        alert_mask=lt.alert.category_t.tracker_notification
        | lt.alert.category_t.error_notification
    )
    with tempfile.TemporaryDirectory() as tmp:
        params = lt.add_torrent_params()
        params.info_hashes = lt.info_hash_t(lt.sha1_hash(bytes.fromhex(info_hash)))
        params.trackers = [url]
        params.save_path = tmp
        ses.add_torrent(params)
        out = {"num_peers": 0, "error": "no tracker reply within 30 s"}
        deadline = time.time() + 30
        while time.time() < deadline and out["error"] is not None and "done" not in out:
            ses.wait_for_alert(500)
            for a in ses.pop_alerts():
                if isinstance(a, lt.tracker_reply_alert):
                    out = {"num_peers": a.num_peers, "error": None}
                    break
                if isinstance(a, lt.tracker_error_alert):
                    out = {"num_peers": 0, "error": a.message(), "done": True}
                    break
        out.pop("done", None)
        out["listen_port"] = ses.listen_port()
        print(json.dumps(out), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
