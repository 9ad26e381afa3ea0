"""A libtorrent seeder for the benchmark: seeds TORRENT from SAVE_PATH on 127.0.0.1, no trackers.

Usage: lt_seed.py TORRENT SAVE_PATH
Prints "listening on 127.0.0.1:PORT" once ready, then seeds until killed.
"""
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import lt_session  # noqa: E402


def main():
    torrent, save = sys.argv[1], sys.argv[2]
    ses = lt_session.session()
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    # The content is known good: no hash check, and no trackers (a seed told its own address
    # by a tracker connects to itself).
    params.flags |= lt.torrent_flags.seed_mode
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(params)
    h.replace_trackers([])
    while not ses.is_listening():
        time.sleep(0.01)
    print(f"listening on 127.0.0.1:{ses.listen_port()}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
