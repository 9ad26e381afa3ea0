//! The deploy/ files are checked by the tools that will read them, without Docker or systemd
//! running: `systemd-analyze verify` on the unit, `nginx -t` on the proxy config.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn deploy(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// The shipped unit, pointed at the binary just built, written into `dir`; None (the test is
/// skipped) where `systemd-analyze` is not installed.
fn unit_in(dir: &Path) -> Option<std::path::PathBuf> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed");
        return None;
    }
    // The unit names the installed binary; point it at the one just built.
    let unit = std::fs::read_to_string(deploy("bitseed.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/bitseed", env!("CARGO_BIN_EXE_bitseed"));
    let path = dir.join("bitseed.service");
    std::fs::write(&path, unit).unwrap();
    Some(path)
}

#[test]
fn systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = unit_in(dir.path()) else {
        return;
    };
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Only our unit's own problems count (the host may lack units ours is ordered after).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("bitseed.service"))
        .collect();
    assert!(o.status.success() && ours.is_empty(), "{err}");
}

/// A cluster node's settings (deploy/cluster/bitseed-node.conf), as a drop-in over the unit:
/// systemd reads it (a bad line in it would be named) and finds nothing to say.
#[test]
fn cluster_node_drop_in_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = unit_in(dir.path()) else {
        return;
    };
    let drop_in = dir.path().join("bitseed.service.d");
    std::fs::create_dir(&drop_in).unwrap();
    let verify = |conf: &str| {
        std::fs::write(drop_in.join("cluster.conf"), conf).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let conf = std::fs::read_to_string(deploy("cluster/bitseed-node.conf")).unwrap();
    // The drop-in is read: a key systemd does not know in it is named.
    let (_, err) = verify(&format!("{conf}Bogus=1\n"));
    assert!(err.contains("cluster.conf"), "drop-in not read: {err}");
    let (ok, err) = verify(&conf);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("bitseed.service") || l.contains("cluster.conf"))
        .collect();
    assert!(ok && ours.is_empty(), "{err}");
    // Its settings are the ones `serve` reads (a misspelt variable would pass systemd).
    let env: Vec<(String, String)> = conf
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(env.len() >= 4, "{env:?}");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bitseed"))
        .args(["serve", "--check", "--config"])
        .arg(&empty)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("node_url = \"http://node1.example.com:8080\""),
        "{shown}"
    );
    assert!(
        shown.contains("peer_addr = \"203.0.113.11:6881\""),
        "{shown}"
    );
}

#[test]
fn nginx_config_passes_nginx_t() {
    if !crate::common::have_nginx() {
        return;
    }
    crate::common::Nginx::check(&std::fs::read_to_string(deploy("nginx.conf")).unwrap());
}

/// deploy/cluster/nginx.conf (nginx in front of three nodes) passes `nginx -t`, its node names
/// (which resolve only inside the compose network) replaced by loopback.
#[test]
fn cluster_nginx_config_passes_nginx_t() {
    if !crate::common::have_nginx() {
        return;
    }
    let conf = std::fs::read_to_string(deploy("cluster/nginx.conf")).unwrap();
    assert_eq!(
        conf.matches("server node").count(),
        3,
        "three nodes upstream"
    );
    crate::common::Nginx::check(&conf.replace("server node", "server 127.0.0."));
}

/// A GET sent from a chosen loopback address, so the client is not the proxy's own address,
/// with `headers` (each `Name: value`) added.
fn get_from(local: IpAddr, addr: SocketAddr, path: &str, headers: &[&str]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(local, 0)).unwrap();
        sock.connect(addr).await.unwrap()
    });
    let mut s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// bitseed behind deploy/nginx.conf on loopback: an announce from 127.0.0.2 through the proxy is
/// stored under 127.0.0.2 (from X-Forwarded-For, trusted because the proxy is listed in
/// `tracker.trusted_proxies`), not under the proxy's 127.0.0.1, and not under any address the
/// client itself claims in `Forwarded`, `X-Real-IP` or `X-Forwarded-For` (the proxy sets or
/// clears each of them). Links in the page come from the proxy's host, not the client's
/// `X-Forwarded-Host`.
#[test]
fn tracker_sees_the_client_address_through_nginx() {
    if !crate::common::have_nginx() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("file.bin"), crate::common::data(100_000, 1)).unwrap();
    let config = dir.path().join("bitseed.toml");
    std::fs::write(&config, "[tracker]\ntrusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let server = crate::common::Server::start(
        &content,
        &dir.path().join("state"),
        &["--config", config.to_str().unwrap()],
    );
    let t = server.wait_published("file.bin", None);
    let hash = t["info_hash"].as_str().unwrap().to_owned();

    // The deploy config, pointed at this bitseed and a free local port.
    let port = crate::common::free_port();
    let site = std::fs::read_to_string(deploy("nginx.conf"))
        .unwrap()
        .replace("127.0.0.1:8080", &server.http.to_string())
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("listen [::]:80;", "");
    let nginx = crate::common::Nginx::start(&site, port);
    let proxy = nginx.addr;

    let client: IpAddr = "127.0.0.2".parse().unwrap();
    let spoofs = [
        "Forwarded: for=203.0.113.66",
        "X-Real-IP: 203.0.113.67",
        "X-Forwarded-For: 203.0.113.68",
        "X-Forwarded-Host: x\"><script>alert(1)</script>",
        "X-Forwarded-Proto: javascript",
    ];
    let via_proxy = get_from(
        client,
        proxy,
        &crate::common::leecher_announce(&hash).replace("port=6881", "port=7001"),
        &spoofs,
    );
    assert!(via_proxy.contains("8:intervali"), "{via_proxy}");
    let page = get_from(client, proxy, "/", &spoofs);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        !page.contains("<script>alert") && !page.contains("javascript:"),
        "{page}"
    );
    assert!(
        page.contains(&format!("http://{proxy}/torrents/")),
        "{page}"
    );
    // Another peer asks bitseed directly, with the dictionary model to read addresses as text.
    let direct = crate::common::http_get(
        server.http,
        &format!(
            "{}&compact=0",
            crate::common::leecher_announce(&hash).replace("port=6881", "port=7002")
        ),
        &[],
    );
    let body = String::from_utf8_lossy(&direct.body).into_owned();
    assert!(body.contains("2:ip9:127.0.0.24:porti7001e"), "{body}");
    assert!(
        !body.contains("203.0.113."),
        "a client-claimed address was stored: {body}"
    );

    // A browser's WebSocket tracker connection through the proxy: the upgrade is passed on,
    // and the browser is counted with the two HTTP peers.
    let mut ws = crate::common::ws_connect(proxy, Duration::from_secs(10));
    let hash_bytes = hex::decode(&hash).unwrap();
    crate::common::ws_send(
        &mut ws,
        &serde_json::json!({"action": "announce",
            "info_hash": crate::common::binary_string(&hash_bytes),
            "peer_id": crate::common::binary_string(&[b'w'; 20]), "left": 5,
            "event": "started", "numwant": 0, "offers": []}),
    );
    let answer = crate::common::ws_recv(&mut ws).expect("an answer through nginx");
    assert_eq!(answer["incomplete"], 3, "{answer}");
}

/// deploy/bitseed.example.toml loads through the real loader, and lists every key with its
/// default: it cannot drift from the code.
#[test]
fn example_config_is_complete_and_loads() {
    let path = deploy("bitseed.example.toml");
    let loaded = bitseed::config::Settings::load(Some(&path), &Vec::new()).expect("example loads");
    assert_eq!(
        loaded,
        bitseed::config::Settings::default(),
        "example values are the defaults"
    );

    fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let key = format!("{prefix}{k}");
                if v.is_table() {
                    keys(v, &format!("{key}."), out);
                } else {
                    out.push(key);
                }
            }
        }
    }
    let example: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let defaults = toml::Value::try_from(bitseed::config::Settings::default()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys(&example, "", &mut a);
    keys(&defaults, "", &mut b);
    a.sort();
    b.sort();
    assert_eq!(a, b, "keys in the example vs keys in the code");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# public_url = "),
        "optional keys are shown commented"
    );
}

/// The container build copies every folder the crate's manifest reaches (targets, the patched
/// uTP crate): a folder left out only shows at `docker build`, which no test here can run.
#[test]
fn the_dockerfile_copies_every_folder_the_manifest_needs() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let mut needed = 0;
    for line in manifest.lines() {
        let Some((_, rest)) = line.split_once("path = \"") else {
            continue;
        };
        let path = rest.split('"').next().unwrap();
        let top = path.split('/').next().unwrap();
        needed += 1;
        assert!(
            copied.contains(&top),
            "Cargo.toml needs `{path}`, the Dockerfile copies {copied:?}"
        );
    }
    assert!(needed >= 4, "no paths found in Cargo.toml");
}
