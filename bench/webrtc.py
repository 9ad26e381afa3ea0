#!/usr/bin/python3
"""In-browser download speed on loopback: headless Chromium clicks "Download in browser" on
bitseed's page (the npm package's WebTorrent bundle, served as a CDN would) and fetches a
SIZE_MIB file, RUNS times per case:

  webrtc    every byte from bitseed's seeder over WebRTC (the browser cannot reach /files/)
  web_seed  every byte from the web seed (peer.webrtc off)

Prints per run the seconds from the click to the last byte, MB/s, and bitseed's CPU seconds;
then medians. The page's own SHA-256 check and save come after and are not timed.

Usage: bench/webrtc.py [--bin target/release/bitseed] [--size-mib 256] [--runs 3]
       [--cases webrtc,web_seed]
Needs: chromium, and tests/interop/webtorrent/node_modules (npm ci there). Builds nothing:
run `cargo build --release` first. Everything lives in /dev/shm and on loopback.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(
    ROOT, "tests/interop/webtorrent/node_modules/webtorrent/dist/webtorrent.min.js"
)
CLK = os.sysconf("SC_CLK_TCK")


def serve_bundle(data):
    """The bundle over HTTP on loopback, as a CDN serves it (CORS open); its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Bitseed:
    def __init__(self, binary, work, config):
        self.dir = tempfile.mkdtemp(dir=work)
        self.content = os.path.join(self.dir, "content")
        os.mkdir(self.content)
        cfg = os.path.join(self.dir, "bitseed.toml")
        with open(cfg, "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir, "log"), "w+")
        env = dict(os.environ, BITSEED_DHT__ENABLED="false", NO_COLOR="1", RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [binary, "serve", "--content", self.content, "--state", os.path.join(self.dir, "state"),
             "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--peer", "127.0.0.1:0",
             "--settle", "0.2", "--config", cfg],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.time() + 30
        while True:
            self.log.seek(0)
            m = re.search(r"http listening on (\S+)", self.log.read())
            if m:
                self.http = m.group(1)
                break
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit("bitseed did not start: see " + self.log.name)
            time.sleep(0.05)

    def api(self):
        with urllib.request.urlopen(f"http://{self.http}/api/torrents") as r:
            return json.load(r)

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Chromium:
    """Headless Chromium over its DevTools protocol on a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, work, flags):
        self.profile = tempfile.mkdtemp(dir=work)
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', "chromium",
             "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", *flags,
             "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next = 0
        self.buf = b""
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params):
        self.next += 1
        msg = {"id": self.next, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    sys.exit("chromium closed its DevTools pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            m = json.loads(raw)
            if m.get("id") == self.next:
                if "error" in m:
                    sys.exit(f"{method}: {m['error']}")
                return m["result"]

    def eval(self, script):
        r = self.call("Runtime.evaluate", {"expression": script, "returnByValue": True})
        return r["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def run_once(server, size, block_files):
    browser = Chromium(os.path.dirname(server.dir), ["--allow-loopback-in-peer-connection"])
    try:
        browser.call("Page.setDownloadBehavior", {"behavior": "deny"})
        if block_files:
            browser.call("Network.enable", {})
            browser.call("Network.setBlockedURLs", {"urls": ["*/files/*"]})
        browser.call("Page.navigate", {"url": f"http://{server.http}/"})
        deadline = time.time() + 30
        while browser.eval("document.readyState === 'complete' && !!document.querySelector('button.wt')") is not True:
            if time.time() > deadline:
                sys.exit("the page never loaded")
            time.sleep(0.05)
        cpu0 = server.cpu()
        t0 = time.monotonic()
        browser.eval("window.showSaveFilePicker = undefined; document.querySelector('button.wt').click(); true")
        card = ("(() => { const d = document.querySelector('.inbrowser').dataset;"
                " return [Number(d.seedBytes || 0), Number(d.webBytes || 0),"
                " Number(d.peerBytes || 0), d.state || ''] })()")
        deadline = time.time() + 600
        while True:
            seed, web, peer, state = browser.eval(card)
            if seed + web + peer >= size:
                break
            if state == "failed" or time.time() > deadline:
                sys.exit(f"download failed: {browser.eval(card)}")
            time.sleep(0.02)
        secs = time.monotonic() - t0
        return secs, server.cpu() - cpu0, seed, web
    finally:
        browser.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/bitseed"))
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cases", default="webrtc,web_seed")
    a = p.parse_args()
    with open(BUNDLE, "rb") as f:
        bundle = f.read()
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(bundle).digest()).decode()
    cdn = serve_bundle(bundle)
    size = a.size_mib << 20
    work = tempfile.mkdtemp(dir="/dev/shm", prefix="bitseed-webrtc.")
    data = os.urandom(size)
    try:
        for case in a.cases.split(","):
            config = (f'[page]\nwebtorrent_url = "http://127.0.0.1:{cdn}/webtorrent.min.js"\n'
                      f'webtorrent_integrity = "{integrity}"\nbrowser_max_bytes = {size * 2}\n')
            if case == "web_seed":
                config += "\n[peer.webrtc]\nenabled = false\n"
            server = Bitseed(a.bin, work, config)
            try:
                with open(os.path.join(server.content, "bench.bin"), "wb") as f:
                    f.write(data)
                deadline = time.time() + 600
                while not any(t.get("sha256") for t in server.api()):
                    if time.time() > deadline:
                        sys.exit("never published")
                    time.sleep(0.2)
                rates = []
                for run in range(a.runs):
                    secs, cpu, seed, web = run_once(server, size, case == "webrtc")
                    rate = size / secs / 1e6
                    rates.append(rate)
                    print(f"{case} run {run + 1}: {secs:.2f} s, {rate:.1f} MB/s, bitseed CPU "
                          f"{cpu:.2f} s (from bitseed's wire {seed}, web seed {web})", flush=True)
                print(f"{case}: median {statistics.median(rates):.1f} MB/s over {a.runs} runs "
                      f"of {a.size_mib} MiB", flush=True)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
