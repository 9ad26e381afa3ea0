"""libtorrent's create_torrent, for bench/create.sh: lt_create.py PATH OUT PIECE_SIZE v1|v2|hybrid"""
import os
import sys

import libtorrent as lt

path, out, piece_size, fmt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[fmt]
ct = lt.create_torrent(fs, piece_size, flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
with open(out, "wb") as f:
    f.write(lt.bencode(ct.generate()))
