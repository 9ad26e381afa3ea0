"""A torrent file without its web seeds (the top-level `url-list`), so that only the peer wire can
serve it: what the benchmarks download to measure the seeder alone.

Usage: strip_web_seed.py IN OUT      (either may be - for standard input or output)
"""
import sys


def skip_string(t, at):
    """The index just past the bencoded string at `at`."""
    colon = t.index(b":", at)
    return colon + 1 + int(t[at:colon])


def strip(t):
    key = b"8:url-list"
    at = t.find(key)
    if at < 0:
        return t
    value = at + len(key)
    if t[value:value + 1] == b"l":
        end = value + 1
        while t[end:end + 1] != b"e":
            end = skip_string(t, end)
        end += 1
    else:
        end = skip_string(t, value)
    return t[:at] + t[end:]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    t = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
    out = strip(t)
    if dst == "-":
        sys.stdout.buffer.write(out)
    else:
        with open(dst, "wb") as f:
            f.write(out)


if __name__ == "__main__":
    main()
