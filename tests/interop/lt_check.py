"""Load a torrent with libtorrent, print what it sees as JSON, and check the content on disk.

Usage: lt_check.py TORRENT SAVE_PATH
Prints {"info_hash", "info_hash_v2", "files": [{"path", "length", "pad"}], "num_pieces",
"checked": true|false, "valid_pieces": N}. `checked` is true when libtorrent's own check of
the data found every piece valid (it then reports the torrent as seeding).
"""
import json
import sys
import time

import libtorrent as lt
import lt_session


def main():
    torrent, save_path = sys.argv[1], sys.argv[2]
    ti = lt.torrent_info(torrent)
    ih = ti.info_hashes()
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        files.append(
            {
                "path": fs.file_path(i),
                "length": fs.file_size(i),
                "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
            }
        )
    out = {
        "info_hash": str(ih.v1) if ih.has_v1() else None,
        "info_hash_v2": str(ih.v2) if ih.has_v2() else None,
        "files": files,
        "num_pieces": ti.num_pieces(),
    }

    ses = lt_session.session()
    h = lt_session.add(ses, save_path, ti)
    checking = (
        lt.torrent_status.checking_files,
        lt.torrent_status.checking_resume_data,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        st = h.status()
        if st.state not in checking and st.state != lt.torrent_status.checking_files:
            # Downloading, finished or seeding: the check of the files is over.
            if st.state in (lt.torrent_status.seeding, lt.torrent_status.finished, lt.torrent_status.downloading):
                break
        time.sleep(0.05)
    st = h.status()
    out["state"] = str(st.state)
    out["valid_pieces"] = st.num_pieces
    out["checked"] = st.num_pieces == ti.num_pieces()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
