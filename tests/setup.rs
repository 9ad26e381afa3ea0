//! Issue 13, "CLI and set-up": errors that name the value and the fix, file modes, settings from
//! the environment, plain logs, plurals, and a content folder that is missing or a file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Runs bitseed with `args` and `env`; its exit code and stderr.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let o = bitseed()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run bitseed");
    (o.status.code(), stderr(&o))
}

/// One line on stderr, exit code `code`, and every one of `needles` in it.
fn says(what: &str, (code, err): (Option<i32>, String), want: i32, needles: &[&str]) {
    assert_eq!(code, Some(want), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: one line, got {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: no {n:?} in {err}");
    }
}

#[test]
fn errors_name_the_value_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, data(1000, 1)).unwrap();
    let f = file.to_str().unwrap();
    let out = dir.path().join("out.torrent");
    let o = out.to_str().unwrap();
    let missing = dir.path().join("no-such-folder").join("x.torrent");

    says(
        "--http host name",
        run_env(&["serve", "--http", "localhost:8080", "--check"], &[]),
        2,
        &["`localhost:8080`", "IP address", "127.0.0.1:8080"],
    );
    says(
        "host name from the environment",
        run_env(
            &["serve", "--check"],
            &[("BITSEED_HTTP__LISTEN", "localhost:8080")],
        ),
        1,
        &["`localhost:8080`", "http.listen", "127.0.0.1:8080"],
    );
    says(
        "--format v3",
        run_env(&["serve", "--format", "v3", "--check"], &[]),
        2,
        &["v3", "v1, merkle, v2, hybrid"],
    );
    let config = dir.path().join("bitseed.toml");
    std::fs::write(&config, "[torrent]\nformat = \"v3\"\n").unwrap();
    says(
        "format = v3 in a file",
        run_env(
            &["serve", "--config", config.to_str().unwrap(), "--check"],
            &[],
        ),
        1,
        &["`v3`", "torrent.format", "v1, merkle, v2 or hybrid"],
    );
    says(
        "create without arguments",
        run_env(&["create"], &[]),
        2,
        &["<PATH>", "usage: bitseed create"],
    );
    let (code, err) = run_env(&["create", f, "-o", missing.to_str().unwrap()], &[]);
    let beside = err.replace(dir.path().to_str().unwrap(), "");
    assert!(!beside.contains(".tmp"), "a temporary file's name: {err}");
    says(
        "-o into a missing folder",
        (code, err),
        2,
        &["no-such-folder", "does not exist"],
    );
    says(
        "create -a not-a-url",
        run_env(&["create", f, "-o", o, "-a", "not-a-url"], &[]),
        2,
        &["`not-a-url`", "udp://", "e.g."],
    );
    says(
        "create -w without a scheme",
        run_env(&["create", f, "-o", o, "-w", "example.com/files/"], &[]),
        2,
        &["`example.com/files/`", "https://"],
    );
    assert!(!out.exists());
}

/// `verify` of a file of the wrong size says so in one line, not once per piece.
#[test]
fn verify_of_a_wrong_size_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, data(1 << 20, 1)).unwrap();
    let t = dir.path().join("f.torrent");
    let r = run(&[
        "create",
        file.to_str().unwrap(),
        "-o",
        t.to_str().unwrap(),
        "-p",
        "16K",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    std::fs::write(&file, data(1 << 19, 1)).unwrap();
    let r = run(&["verify", t.to_str().unwrap(), file.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let report = stdout(&r);
    assert_eq!(report.matches("size differs").count(), 1, "{report}");
    assert!(!report.contains("bad piece"), "{report}");
    assert_eq!(report.trim().lines().count(), 2, "{report}");
    assert!(report.contains("FAILED"), "{report}");
}

/// A state folder this user cannot write: the error says so, with the fix, not SQLite's code.
#[test]
fn an_unwritable_state_folder_says_permissions() {
    let dir = tempfile::tempdir().unwrap();
    // Root writes anywhere: run as nobody then, in folders nobody can reach but not write.
    let as_root = rustix::process::geteuid().is_root();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    for state in [locked.clone(), locked.join("inside")] {
        let args = [
            "serve",
            "--content",
            content.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--peer",
            "127.0.0.1:0",
        ];
        let mut cmd = if as_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_bitseed"));
            c
        } else {
            bitseed()
        };
        let o = cmd.args(args).env("NO_COLOR", "1").output().expect("run");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let last = err.trim().lines().last().unwrap_or("");
        for needle in [state.to_str().unwrap(), "permission denied", "--state"] {
            assert!(last.contains(needle), "no {needle:?} in {last}");
        }
        assert!(!err.contains("Error code"), "{err}");
    }
}

/// `create` leaves the .torrent readable as a plain `>` would (0666 less the umask), so a web
/// server running as another user can serve it.
#[test]
fn create_writes_the_torrent_with_the_umask_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, data(1000, 1)).unwrap();
    for (umask, mode) in [("022", 0o644), ("027", 0o640)] {
        let t = dir.path().join(format!("f{umask}.torrent"));
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_bitseed"))
            .args(["create", file.to_str().unwrap(), "-o", t.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let got = std::fs::metadata(&t).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}: {got:o}");
    }
}

/// Counts in messages agree with their nouns.
#[test]
fn one_file_is_not_1_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, data(1000, 1)).unwrap();
    let t = dir.path().join("f.torrent");
    let r = run(&["create", file.to_str().unwrap(), "-o", t.to_str().unwrap()]);
    let err = stderr(&r);
    assert!(err.contains(" in 1 file, 1 piece of "), "{err}");
    assert!(
        !err.contains("1 files") && !err.contains("1 pieces"),
        "{err}"
    );
}

/// A list setting from the environment, comma-separated: behind a proxy in a container, with
/// no file.
#[test]
fn list_settings_come_from_the_environment() {
    let r = bitseed()
        .args(["serve", "--check"])
        .env("BITSEED_TRACKER__TRUSTED_PROXIES", "127.0.0.1, ::1")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    let printed: toml::Value = toml::from_str(&stdout(&r)).unwrap();
    assert_eq!(
        printed["tracker"]["trusted_proxies"],
        toml::Value::Array(vec!["127.0.0.1".into(), "::1".into()])
    );
    // And the server believes the proxy: its links follow the forwarded host.
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(100, 1)).unwrap();
    let server = Server::start_env(
        &d,
        &[],
        &[("BITSEED_TRACKER__TRUSTED_PROXIES", "127.0.0.1")],
    );
    server.wait_published("a.bin", None);
    let r = crate::common::http_get(
        server.http,
        "/api/torrents",
        &[
            ("X-Forwarded-Host", "dl.example.com"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        list[0]["download_url"],
        "https://dl.example.com/files/a.bin"
    );
}

/// Logs carry no colour codes when stderr is not a terminal (journald, `docker logs`, files),
/// with or without NO_COLOR.
#[test]
fn logs_have_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    // It logs at info, then stops at the content check.
    let o = bitseed()
        .args(["serve", "--content", not_a_folder.to_str().unwrap()])
        .args(["--state", dir.path().join("state").to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(err.contains("INFO"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes: {err:?}");
}

/// A missing content folder is made and said; one that is a file stops the server at start
/// with the fix.
#[test]
fn a_missing_content_folder_is_said_and_a_file_is_refused() {
    let d = dirs();
    let content = d.content.join("not-yet");
    let server = Server::start(&content, &d.state, &[]);
    let line = server.wait_log("did not exist: created it", Duration::from_secs(20));
    assert!(line.contains(content.to_str().unwrap()), "{line}");
    assert!(content.is_dir());
    assert!(server.torrents().is_empty());
    drop(server);

    let file = d.content.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mut child = bitseed()
        .args(["serve", "--content", file.to_str().unwrap()])
        .args(["--state", d.state.to_str().unwrap()])
        .args([
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--peer",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve ran with a file as its content folder");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.contains(file.to_str().unwrap()) && last.contains("is a file, not a folder"),
        "{last}"
    );
}

/// The checkout ships nothing in `content/`: `cargo run -- serve` in it publishes only what the
/// publisher puts there (a placeholder README would be the first torrent on the page).
#[test]
fn the_checkout_has_no_placeholder_in_content() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(o) = Command::new("git")
        .args(["ls-files", "--", "content"])
        .current_dir(root)
        .output()
    else {
        eprintln!("skipping: no git");
        return;
    };
    if !o.status.success() {
        eprintln!("skipping: not a git checkout");
        return;
    }
    assert_eq!(stdout(&o).trim(), "", "files tracked under content/");
}
