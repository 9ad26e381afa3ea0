"""A libtorrent seeder for the benchmarks: seeds TORRENT from SAVE_PATH on 127.0.0.1 (or --listen).

Usage: lt_seed.py TORRENT SAVE_PATH [--up BPS] [--announce] [--stats FILE] [--mode tcp|utp|rc4]
                  [--listen IP]
Prints "listening on IP:PORT" (IP 127.0.0.1 unless --listen says otherwise) once ready, then
seeds until killed. By default it has no trackers (bench/seed.sh hands it to the downloader directly); with --announce it announces to
the torrent's trackers (bench/swarm.sh), with --up its upload is capped (on loopback too), and
with --stats it writes the bytes it has uploaded to FILE every 100 ms. --mode utp takes uTP
connections as well as TCP; --mode rc4 takes encrypted (MSE, RC4) connections only.
"""
import argparse
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
    p.add_argument("--up", type=int, default=0)
    p.add_argument("--announce", action="store_true")
    p.add_argument("--stats")
    p.add_argument("--mode", choices=["tcp", "utp", "rc4"], default="tcp")
    p.add_argument("--listen", default="127.0.0.1")
    a = p.parse_args()
    extra = {"out_enc_policy": int(lt.enc_policy.disabled), "listen_interfaces": f"{a.listen}:0"}
    if a.up:
        extra.update(lt_session.limits(up=a.up))
    if a.mode == "utp":
        extra.update({"enable_incoming_utp": True, "enable_outgoing_utp": True})
    if a.mode == "rc4":
        extra.update(lt_session.RC4_FORCED)
    ses = lt_session.session(**extra)
    # The content is known good: no hash check.
    h = lt_session.add(ses, a.save, lt.torrent_info(a.torrent), seed_mode=True)
    if not a.announce:
        # A seed told its own address by a tracker connects to itself.
        h.replace_trackers([])
    while not ses.is_listening():
        time.sleep(0.01)
    print(f"listening on {a.listen}:{ses.listen_port()}", flush=True)
    while True:
        if a.stats:
            with open(a.stats + ".tmp", "w") as f:
                f.write(str(h.status().all_time_upload))
            os.replace(a.stats + ".tmp", a.stats)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
