//! Issue 13, "The catalog": queued entries in the API and the page, and a file some process
//! still has open for writing is not published, however long its writer pauses.

use std::io::Write;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// The publisher's token: entries not published yet are shown to the publisher only.
const TOKEN: &str = "catalog-test-token-0123";

/// The API entry `path` as the publisher sees it, once `ok` holds for it.
fn wait_entry(server: &Server, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    poll(Duration::from_secs(30), Duration::from_millis(50), || {
        let list = server.publisher_torrents(TOKEN);
        let found = list.iter().find(|t| t["path"] == path && ok(t)).cloned();
        found.ok_or_else(|| {
            format!(
                "{path} never got there: {list:?}; log:\n{}",
                server.log.lock().unwrap()
            )
        })
    })
}

/// Entries waiting for their turn are listed (to the publisher) as `queued` with their place;
/// one whose file is still open for writing says so and waits for the close, then is published
/// whole.
#[test]
fn queued_entries_show_their_place_and_open_files_wait_for_the_close() {
    let d = dirs();
    let server = Server::with_config(&d, &format!("[page]\nadmin_token = \"{TOKEN}\"\n"));
    server.wait_log("catalog:", Duration::from_secs(20));
    let first = data(5 << 20, 1);
    let second = data(5 << 20, 2);
    // A copy that stalls: the first half written, the file held open.
    let mut a = std::fs::File::create(d.content.join("a.iso")).unwrap();
    a.write_all(&first).unwrap();
    a.flush().unwrap();
    let t = wait_entry(&server, "a.iso", |t| t["status"] == "queued");
    assert_eq!(t["being_written"], true, "{t}");
    assert_eq!(t["queue_position"], 1, "{t}");
    let mut b = std::fs::File::create(d.content.join("b.iso")).unwrap();
    b.write_all(b"partial").unwrap();
    let t = wait_entry(&server, "b.iso", |t| t["queue_position"] == 2);
    assert_eq!(
        (t["status"].as_str(), t["being_written"].as_bool()),
        (Some("queued"), Some(true))
    );
    let r = http_get(
        server.http,
        "/",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    let html = String::from_utf8(r.body).unwrap();
    assert!(html.contains("waiting for the copy to finish"), "{html}");
    // Visitors see published entries only.
    let html = String::from_utf8(server.get("/").body).unwrap();
    assert!(!html.contains("a.iso"), "{html}");
    assert!(server.metric("bitseed_catalog_queued").unwrap() >= 2);

    // Far longer than the settle time (0.5 s here) with nothing written: still not published.
    std::thread::sleep(Duration::from_secs(3));
    let t = wait_entry(&server, "a.iso", |_| true);
    assert_eq!(
        t["status"], "queued",
        "published while open for writing: {t}"
    );

    // The rest of the copy, then the close: published once, whole.
    a.write_all(&second).unwrap();
    drop(a);
    let t = server.wait_published("a.iso", None);
    assert_eq!(t["size"], 10 << 20);
    assert_eq!(t["queue_position"], Value::Null);
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("published `a.iso`").count(), 1, "{log}");
    assert_eq!(log.matches("hashing `a.iso`").count(), 1, "{log}");
    // b is still open: still queued, now first in line.
    let t = wait_entry(&server, "b.iso", |t| t["queue_position"] == 1);
    assert_eq!(t["status"], "queued");
    drop(b);
    let t = server.wait_published("b.iso", None);
    assert_eq!(t["size"], 7);
}

/// The documented way to publish from a slow source: write `NAME.part`, then rename it. The
/// `.part` file is never listed, and the entry is published once, whole.
#[test]
fn copy_to_part_then_rename_is_published_once() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_log("catalog:", Duration::from_secs(20));
    let body = data(3 << 20, 7);
    let part = d.content.join("release.tar.part");
    let mut f = std::fs::File::create(&part).unwrap();
    f.write_all(&body[..1 << 20]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    f.write_all(&body[1 << 20..]).unwrap();
    drop(f);
    std::fs::rename(&part, d.content.join("release.tar")).unwrap();
    let t = server.wait_published("release.tar", None);
    assert_eq!(t["size"], 3 << 20);
    assert!(server
        .torrents()
        .iter()
        .all(|t| t["path"] != "release.tar.part"));
    let r = server.get("/files/release.tar");
    assert_eq!(r.body, body);
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("published `release.tar`").count(), 1, "{log}");
    assert!(!log.contains("release.tar.part`"), "{log}");
}

/// Top-level symbolic links: skipped and said once by default; with `catalog.follow_symlinks`
/// published under the link's name when they lead beneath the content folder, never when they
/// lead outside it or to a hidden name; a change to the target republishes the link.
#[test]
fn links_are_said_and_followed_only_inside_when_asked() {
    use std::os::unix::fs::symlink;
    let d = dirs();
    crate::common::write_tree(
        &d.content,
        &[("releases/v2.iso", 3000), ("releases/notes/a.txt", 100)],
    );
    std::fs::write(d.content.join(".hidden.bin"), b"private").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), b"secret").unwrap();
    symlink("releases/v2.iso", d.content.join("latest.iso")).unwrap();
    symlink("releases/notes", d.content.join("notes")).unwrap();
    symlink(
        outside.path().join("secret.bin"),
        d.content.join("secret.bin"),
    )
    .unwrap();
    symlink("releases/../../", d.content.join("up")).unwrap();
    symlink(".hidden.bin", d.content.join("h.bin")).unwrap();

    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("releases", None);
    for link in ["latest.iso", "notes", "secret.bin", "up", "h.bin"] {
        let said =
            format!("not publishing `{link}`: a symbolic link (catalog.follow_symlinks is off)");
        server.wait_log(&said, Duration::from_secs(20));
    }
    assert_eq!(server.torrents().len(), 1, "{:?}", server.torrents());
    drop(server);

    let server = Server::with_config(&d, "[catalog]\nfollow_symlinks = true\n");
    let t = server.wait_published("latest.iso", None);
    assert_eq!(
        (t["name"].as_str(), t["size"].as_u64()),
        (Some("latest.iso"), Some(3000))
    );
    let bytes = std::fs::read(d.content.join("releases/v2.iso")).unwrap();
    assert_eq!(server.get("/files/latest.iso").body, bytes);
    let t = server.wait_published("notes", None);
    assert_eq!(t["files"], 1);
    assert_eq!(server.get("/files/notes/a.txt").status, 200);
    for (link, why) in [
        ("secret.bin", "outside the content folder"),
        ("up", "outside the content folder"),
        ("h.bin", "hidden or temporary name"),
    ] {
        let line = server.wait_log(
            &format!("not publishing `{link}`: a symbolic link"),
            Duration::from_secs(20),
        );
        assert!(line.contains(why), "{line}");
        assert_eq!(server.get(&format!("/files/{link}")).status, 404);
    }
    assert!(server
        .torrents()
        .iter()
        .all(|t| !["secret.bin", "up", "h.bin"].contains(&t["path"].as_str().unwrap())));
    // The target changes: the link's entry is published again with the new bytes.
    let old = server.wait_published("latest.iso", None)["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let new = data(4000, 99);
    std::fs::write(d.content.join("releases/v2.iso"), &new).unwrap();
    let t = server.wait_published("latest.iso", Some(&old));
    assert_eq!(t["size"], 4000);
    assert_eq!(server.get("/files/latest.iso").body, new);
}
