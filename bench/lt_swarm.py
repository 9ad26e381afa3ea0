"""N libtorrent leechers in one process, for bench/swarm.sh: leecher i has a session of its own on
127.0.0.(FIRST+i) (libtorrent refuses a second peer from one address), TCP only, with upload and
download limits that hold on loopback (ignore_limits_on_local_network off). Each adds TORRENT
(its trackers and web seeds as they are in the file) and downloads into SAVE/i.

Usage: lt_swarm.py TORRENT SAVE N UP_BPS DOWN_BPS [--first 10] [--timeout 600]
                   [--stagger S] [--leave-after S]
--stagger S: leecher i adds the torrent i*S seconds after the first (downloads that arrive over
time, as on a website, rather than all at once); --leave-after S: a leecher that has the file
removes the torrent S seconds later (its pieces leave the swarm with it).
Prints one JSON line: {"ok", "all_seconds" (from the first start to the last finish), and per
leecher "seconds" (from its own start), "uploaded", "downloaded" (payload received) and
"redundant" (received twice)}.
"""
import argparse
import json
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import lt_session  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("torrent")
    p.add_argument("save")
    p.add_argument("n", type=int)
    p.add_argument("up", type=int)
    p.add_argument("down", type=int)
    p.add_argument("--first", type=int, default=10)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--stagger", type=float, default=0)
    p.add_argument("--leave-after", type=float, default=None)
    a = p.parse_args()

    sessions = []
    # LT_SWARM_PEERLOG=DIR: every leecher's libtorrent peer log into DIR/i.log (for stalls).
    peerlog = os.environ.get("LT_SWARM_PEERLOG")
    logs = [open(os.path.join(peerlog, f"{i}.log"), "w") for i in range(a.n)] if peerlog else []
    for i in range(a.n):
        ip = f"127.0.0.{a.first + i}"
        ses = lt_session.session(
            listen_interfaces=f"{ip}:0",
            outgoing_interfaces=ip,
            **lt_session.limits(up=a.up, down=a.down),
            out_enc_policy=int(lt.enc_policy.disabled),
            # Tracker announces come from each leecher's own address, so the tracker lists it
            # there; re-announce often enough that late joiners meet early ones.
            announce_to_all_tiers=True,
            min_announce_interval=5,
        )
        if peerlog:
            ses.apply_settings({"alert_mask": lt.alert_category.peer_log | lt.alert_category.error})
        sessions.append(ses)

    def add(i):
        return lt_session.add(sessions[i], os.path.join(a.save, str(i)), lt.torrent_info(a.torrent))

    start = time.time()
    handles = [None] * a.n
    began = [None] * a.n
    done = [None] * a.n
    # A leecher's final counts, kept when it leaves (its handle is gone then).
    final = [None] * a.n

    def active(i):
        # Started and not yet gone.
        return handles[i] is not None and final[i] is None

    def counts(h):
        st = h.status()
        return (st.all_time_upload, st.total_payload_download, st.total_redundant_bytes)
    # LT_SWARM_TRACE=1: once a second on stderr, each leecher's progress and rates, and what
    # each of its peers is sending it (kB/s, by the last byte of the peer's address).
    # LT_SWARM_TRACE=sum: one line per period instead: all leechers' payload download and upload
    # rates (download minus upload: what the publisher sent), and the least and most progress.
    trace = os.environ.get("LT_SWARM_TRACE") in ("1", "sum")
    summary = os.environ.get("LT_SWARM_TRACE") == "sum"
    # LT_SWARM_TRACE_PERIOD: seconds between traces (default 1).
    period = float(os.environ.get("LT_SWARM_TRACE_PERIOD", "1"))
    next_trace = start
    last = (start, 0, 0)
    while time.time() - start < a.timeout and any(d is None for d in done):
        now = time.time()
        for i in range(a.n):
            if handles[i] is None and now - start >= i * a.stagger:
                handles[i] = add(i)
                began[i] = now
            if not active(i):
                continue
            h = handles[i]
            if done[i] is None and h.status().is_seeding:
                done[i] = now - began[i]
            if done[i] is not None and a.leave_after is not None \
                    and now - began[i] - done[i] >= a.leave_after:
                final[i] = counts(h)
                sessions[i].remove_torrent(h)
        if trace and time.time() >= next_trace:
            next_trace += period
            if summary:
                # Rates from the exact byte counts since the last line (libtorrent's own rates
                # are averages over seconds).
                sts = [handles[i].status() for i in range(a.n) if active(i)]
                now = time.time()
                up = sum(s.total_payload_upload for s in sts)
                down = sum(s.total_payload_download for s in sts)
                dt = max(now - last[0], 1e-3)
                print(f"t={now - start:5.1f} down {(down - last[1]) / dt / 1000:6.0f}"
                      f" up {(up - last[2]) / dt / 1000:6.0f} kB/s (leechers)"
                      f" progress {min((s.progress for s in sts), default=0) * 100:5.1f}..{max((s.progress for s in sts), default=0) * 100:5.1f}%",
                      file=sys.stderr)
                last = (now, down, up)
            else:
                print(f"t={time.time() - start:5.1f}", file=sys.stderr)
                for i, h in enumerate(handles):
                    if not active(i):
                        continue
                    st = h.status()
                    by = []
                    for pi in h.get_peer_info():
                        # By the last byte of the address (1 is bitseed's seeder); ws: a web seed.
                        who = "ws" if pi.connection_type != lt.peer_info.standard_bittorrent else pi.ip[0].split('.')[-1]
                        by.append(f"{who}:{pi.down_speed // 1000}")
                    print(f"  {i} {st.progress * 100:5.1f}% down {st.download_rate // 1000:5d} kB/s"
                          f" up {st.upload_rate // 1000:5d} | " + " ".join(by), file=sys.stderr)
        for i, log in enumerate(logs):
            for al in sessions[i].pop_alerts():
                log.write(f"{time.time() - start:7.3f} {al.message()}\n")
        time.sleep(min(0.05, period / 2))
    for i, h in enumerate(handles):
        if active(i):
            final[i] = counts(h)
    # Payload each leecher received (more than the file: blocks that came twice in the endgame)
    # and what libtorrent itself counted as redundant.
    uploaded = [f[0] if f else 0 for f in final]
    downloaded = [f[1] if f else 0 for f in final]
    redundant = [f[2] if f else 0 for f in final]
    ok = all(d is not None for d in done)
    print(json.dumps({
        "ok": ok,
        "all_seconds": max(b - start + d for b, d in zip(began, done)) if ok else None,
        "seconds": done,
        "uploaded": uploaded,
        "downloaded": downloaded,
        "redundant": redundant,
    }), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
