//! Issue 17, "the page downloads in the browser": headless Chromium clicks "Download in
//! browser", WebTorrent (the npm package's browser bundle, served as a CDN would, checked by
//! its integrity hash) joins the swarm through the WebSocket tracker and the web seed, the page
//! checks the SHA-256 and saves the file; a second browser at the same time gets bytes from the
//! first over WebRTC.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};

use crate::common::*;
use crate::common::{dirs, Server};

/// WebRTC between two headless Chromium instances on loopback: host candidates on the loopback
/// interface (not gathered by default), as IP addresses (not mDNS `.local` names, which
/// nothing resolves here), whatever the IP handling policy.
const WEBRTC_ON_LOOPBACK: [&str; 3] = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--force-webrtc-ip-handling-policy=default",
];

/// The card's state, as the page's script keeps it.
const CARD: &str = r#"(() => {
  const box = document.querySelector('.inbrowser');
  return {state: box.dataset.state || '', sha256: box.dataset.sha256 || '',
          peer: Number(box.dataset.peerBytes || 0), web: Number(box.dataset.webBytes || 0),
          seed: Number(box.dataset.seedBytes || 0),
          text: box.querySelector('.wt-state').textContent};
})()"#;

/// `bitseed serve` on `d` whose page loads the `webtorrent` npm package's browser bundle from a
/// stand-in CDN (kept running by the returned `TinyHttp`), with its integrity hash; `more` is
/// the rest of the configuration.
fn serve_with_webtorrent(d: &Dirs, more: &str) -> (TinyHttp, Server) {
    let bundle = std::fs::read(interop_script(
        "webtorrent/node_modules/webtorrent/dist/webtorrent.min.js",
    ))
    .expect("the webtorrent package's browser bundle");
    let integrity = format!("sha384-{}", base64_encode(&Sha384::digest(&bundle)));
    let cdn = TinyHttp::file(bundle, "text/javascript");
    let server = Server::with_config(
        d,
        &format!(
            "[page]\nwebtorrent_url = \"http://{}/webtorrent.min.js\"\n\
             webtorrent_integrity = \"{integrity}\"\n\n{more}",
            cdn.addr
        ),
    );
    (cdn, server)
}

/// Waits until the API lists `name` with the SHA-256 `want`: the page offers the download
/// once it is known (computed while hashing).
fn wait_sha256(server: &Server, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.wait_published(name, None)["sha256"] != want {
        assert!(Instant::now() < deadline, "no SHA-256 in the API");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens the page in `browser`, saving downloads in `dir`, and clicks "Download in browser"
/// (the Blob URL path: the save dialog of the File System Access API cannot be answered here).
fn click_download(browser: &mut Browser, server: &Server, dir: &Path) {
    browser.call(
        "Page.setDownloadBehavior",
        serde_json::json!({"behavior": "allow", "downloadPath": dir}),
    );
    browser.open(&server.url("/"), &server.url("/"), 1280, 800);
    let clicked = browser.eval(
        "(() => { window.showSaveFilePicker = undefined; \
         const b = document.querySelector('button.wt'); \
         if (!b || b.hidden) return false; b.click(); return true; })()",
    );
    assert_eq!(clicked, true, "no visible Download in browser button");
}

fn wait_card(
    browser: &mut Browser,
    what: &str,
    server: &Server,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let card = browser.eval(CARD);
        if done(&card) {
            return card;
        }
        assert!(
            Instant::now() < deadline && card["state"] != "failed",
            "{what}: {card}\ntrouble: {:#?}\nlog:\n{}",
            browser.trouble(),
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The saved file in `dir` once Chromium has finished writing it.
fn saved(dir: &Path, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = dir.join(name);
    loop {
        if path.is_file() {
            return std::fs::read(&path).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{} was never saved",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two browsers download a published file from the page: the first starts alone (the web seed
/// and bitseed's seeder over WebRTC, under one budget: 384 KiB/s, so the download takes
/// seconds), the second joins while the first is under way and gets bytes from it over WebRTC,
/// found through the WebSocket tracker.
/// Each checks the SHA-256 in the page against the published one and saves the file, whose
/// bytes are the published ones; the tracker counted both browsers.
#[test]
fn two_browsers_download_over_the_swarm_in_the_page() {
    if !have_client("chromium", &["--version"]) || !have_webtorrent() {
        return;
    }
    let d = dirs();
    let bytes = data(3 << 20, 77);
    std::fs::write(d.content.join("release.bin"), &bytes).unwrap();
    let (_cdn, server) = serve_with_webtorrent(&d, "[egress]\nmax_rate = 393216\n");
    let want = hex::encode(Sha256::digest(&bytes));
    wait_sha256(&server, "release.bin", &want);

    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = Browser::start_with(&WEBRTC_ON_LOOPBACK);
    click_download(&mut first, &server, dir1.path());
    wait_card(&mut first, "first browser under way", &server, |c| {
        c["web"].as_u64().unwrap_or(0) > 0
    });
    let mut second = Browser::start_with(&WEBRTC_ON_LOOPBACK);
    click_download(&mut second, &server, dir2.path());
    let done = |c: &Value| c["state"] == "done";
    let card1 = wait_card(&mut first, "first browser done", &server, done);
    let card2 = wait_card(&mut second, "second browser done", &server, done);
    for (card, dir, who) in [(&card1, &dir1, "first"), (&card2, &dir2, "second")] {
        assert_eq!(card["sha256"], want.as_str(), "{who}: {card}");
        assert!(
            card["text"].as_str().unwrap().contains("SHA-256 checked"),
            "{who}: {card}"
        );
        assert!(
            saved(dir.path(), "release.bin") == bytes,
            "{who}: saved bytes differ"
        );
        let trouble = if who == "first" {
            first.trouble().len()
        } else {
            second.trouble().len()
        };
        assert_eq!(trouble, 0, "{who}: exceptions or dialogs in the page");
    }
    assert!(
        card2["peer"].as_u64().unwrap() > 0,
        "the second browser got nothing over WebRTC: {card2}\nfirst: {card1}"
    );
    eprintln!("first: {card1}\nsecond: {card2}");
    // Both browsers are in the swarm (sharing while their tabs are open), beside bitseed.
    let t = server.wait_published("release.bin", None);
    assert_eq!(t["seeders"], 3, "{t}");
    assert_eq!(t["completed"], 2, "{t}");
}

/// A script whose bytes are not the ones `page.webtorrent_integrity` names is never run: the
/// card says the download failed (the .torrent and direct download remain), nothing is saved.
#[test]
fn a_webtorrent_script_with_other_bytes_is_refused() {
    if !have_client("chromium", &["--version"]) {
        return;
    }
    let cdn = TinyHttp::file(
        b"export default class { constructor() { document.title = 'ran'; } }".to_vec(),
        "text/javascript",
    );
    let d = dirs();
    std::fs::write(d.content.join("release.bin"), data(100_000, 3)).unwrap();
    let wrong = format!("sha384-{}", base64_encode(&Sha384::digest(b"other bytes")));
    let server = Server::with_config(
        &d,
        &format!(
            "[page]\nwebtorrent_url = \"http://{}/webtorrent.min.js\"\n\
             webtorrent_integrity = \"{wrong}\"\n",
            cdn.addr
        ),
    );
    server.wait_published("release.bin", None);
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::start();
    click_download(&mut browser, &server, dir.path());
    let card = wait_card_state(&mut browser, "failed");
    assert!(
        card["text"].as_str().unwrap().starts_with("Failed"),
        "{card}"
    );
    assert_ne!(browser.eval("document.title"), "ran");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Waits until the card's state is `state`.
fn wait_card_state(browser: &mut Browser, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let card = browser.eval(CARD);
        if card["state"] == state {
            return card;
        }
        assert!(Instant::now() < deadline, "never {state}: {card}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 17 item 4, bitseed as a browser peer: Chromium clicks "Download in browser" while
/// it cannot reach the web seed (`Network.setBlockedURLs` blocks `/files/`, as a filter or a
/// broken path would), and no other browser is in the swarm: every byte comes from bitseed's
/// seeder over WebRTC, which answered the browser's offer through the WebSocket tracker. The
/// card counts them as bitseed's (`data-seed-bytes`), the SHA-256 and the saved bytes are the
/// published ones, and `/metrics` counts what the seeder sent in data channels: the pieces
/// plus the wire protocol's framing. The torrent is hybrid (WebTorrent speaks its v1 hash; the
/// two-browser test above covers v1 alone).
#[test]
fn a_browser_downloads_from_bitseed_over_webrtc_without_the_web_seed() {
    if !have_client("chromium", &["--version"]) || !have_webtorrent() {
        return;
    }
    let d = dirs();
    let bytes = data(2 << 20, 91);
    std::fs::write(d.content.join("direct.bin"), &bytes).unwrap();
    let (_cdn, server) = serve_with_webtorrent(&d, "[torrent]\nformat = \"hybrid\"\n");
    let want = hex::encode(Sha256::digest(&bytes));
    wait_sha256(&server, "direct.bin", &want);
    let dir = tempfile::tempdir().unwrap();
    // Chromium's WebRTC at its defaults but for loopback: its host candidates are mDNS names
    // nobody resolves, as on a visitor's machine; the seeder learns the browser's address
    // from its connectivity checks.
    let mut browser = Browser::start_with(&["--allow-loopback-in-peer-connection"]);
    browser.call("Network.enable", serde_json::json!({}));
    browser.call(
        "Network.setBlockedURLs",
        serde_json::json!({"urls": ["*/files/*"]}),
    );
    click_download(&mut browser, &server, dir.path());
    let card = wait_card(&mut browser, "download from bitseed", &server, |c| {
        c["state"] == "done"
    });
    let seed = card["seed"].as_u64().unwrap();
    eprintln!("card: {card}");
    assert_eq!(card["sha256"], want.as_str(), "{card}");
    assert!(
        saved(dir.path(), "direct.bin") == bytes,
        "saved bytes differ"
    );
    assert_eq!(card["web"], 0, "the web seed was reachable: {card}");
    assert_eq!(card["peer"], 0, "bytes from another browser: {card}");
    assert!(
        seed >= bytes.len() as u64,
        "{seed} bytes from bitseed's wire: {card}"
    );
    assert!(
        card["text"]
            .as_str()
            .unwrap()
            .contains("0 kB from other browsers, 2.1 MB from this server"),
        "{card}"
    );
    assert_eq!(
        browser.trouble().len(),
        0,
        "exceptions or dialogs in the page"
    );
    // What the seeder sent in data channels: the pieces the page counted, and the framing of
    // the wire (13 bytes a block, the handshakes, bitfield and haves): far under 1 %.
    let sent = server.metric("bitseed_webrtc_sent_bytes_total").unwrap();
    assert!(
        sent >= seed && sent <= seed + seed / 100 + 4096,
        "sent {sent} over WebRTC for {seed} received"
    );
    // The same egress accounting as TCP and uTP: peer-wire bytes.
    let egress = server
        .metric("bitseed_egress_bytes_total{channel=\"peer\"}")
        .unwrap();
    assert!(egress >= seed, "egress counted {egress} peer-wire bytes");
    assert_eq!(
        server.metric("bitseed_peer_connections_accepted_total{transport=\"webrtc\"}"),
        Some(1)
    );
    assert!(server.metric("bitseed_webrtc_answers_total").unwrap() >= 1);
    // The page's WebTorrent closes (it may have closed its wire to us already, done): the
    // browser ends the association, and the seeder's session ends with nothing left behind.
    browser.eval("client.destroy(), true");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("bitseed_webrtc_sessions") != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the session outlived its browser"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.metric("bitseed_peer_connections"), Some(0));
}

/// A folder downloads in the browser too: "Download in browser" on a folder's card asks for a
/// folder to write into (here the origin's private file system answers for the picker: the
/// same kind of directory handle), checks every file against the API's SHA-256 and writes the
/// files there, under the folder's name, sub-folders kept and padding files (BEP 47, hybrid)
/// left out.
#[test]
fn a_folder_downloads_in_the_browser_into_a_picked_folder() {
    if !have_client("chromium", &["--version"]) || !have_webtorrent() {
        return;
    }
    let d = dirs();
    let files = [("a.bin", 300_000), ("sub/b.bin", 200_001)];
    write_tree(&d.content.join("pack"), &files);
    let (_cdn, server) = serve_with_webtorrent(&d, "[torrent]\nformat = \"hybrid\"\n");
    // The page offers it once every file's SHA-256 is known.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let api = server.get("/api/torrents/by-name/pack");
        let j: Value = serde_json::from_slice(&api.body).unwrap_or(Value::Null);
        let known = j["file_list"]
            .as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|f| f["sha256"].is_string()));
        if known {
            break;
        }
        assert!(Instant::now() < deadline, "no SHA-256s in the API: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut browser = Browser::start_with(&WEBRTC_ON_LOOPBACK);
    browser.open(&server.url("/"), &server.url("/"), 1280, 800);
    let clicked = browser.eval(
        "(() => { window.showDirectoryPicker = () => navigator.storage.getDirectory(); \
         const b = document.querySelector('button.wt[data-folder]'); \
         if (!b || b.hidden) return false; b.click(); return true; })()",
    );
    assert_eq!(
        clicked, true,
        "no visible Download in browser button on the folder"
    );
    let card = wait_card(&mut browser, "folder download", &server, |c| {
        c["state"] == "done"
    });
    assert!(
        card["text"]
            .as_str()
            .unwrap()
            .contains("SHA-256 checked: 2 files"),
        "{card}"
    );
    // What the page wrote, read back from that folder: each file's SHA-256 by its path (no
    // `.pad` files).
    let written = browser.call(
        "Runtime.evaluate",
        serde_json::json!({"awaitPromise": true, "returnByValue": true, "expression": r#"(async () => {
            const hex = b => [...new Uint8Array(b)].map(x => x.toString(16).padStart(2, '0')).join('');
            const out = {};
            const walk = async (dir, prefix) => {
              for await (const [name, h] of dir.entries()) {
                if (h.kind === 'directory') await walk(h, prefix + name + '/');
                else out[prefix + name] = hex(await crypto.subtle.digest('SHA-256',
                  await (await h.getFile()).arrayBuffer()));
              }
            };
            // Only what the page wrote: WebTorrent keeps its own pieces in this file system.
            const root = await navigator.storage.getDirectory();
            await walk(await root.getDirectoryHandle('pack'), 'pack/');
            return out;
        })()"#}),
    );
    let written = &written["result"]["value"];
    let want: serde_json::Map<String, Value> = files
        .iter()
        .map(|(rel, _)| {
            let bytes = std::fs::read(d.content.join("pack").join(rel)).unwrap();
            (
                format!("pack/{rel}"),
                Value::from(hex::encode(Sha256::digest(&bytes))),
            )
        })
        .collect();
    assert_eq!(written, &Value::Object(want), "{card}");
    assert_eq!(
        browser.trouble().len(),
        0,
        "exceptions or dialogs in the page"
    );
}
