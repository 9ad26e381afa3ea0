//! Transmission 3.00 (Debian 12's `transmission-daemon`) downloading from bitseed's seeder, found
//! through its tracker. Transmission calls 127.0.0.0/8 peers "martian" and never connects to
//! them, so it runs in a network namespace of the test's own (`Netns`), and bitseed listens on
//! the host end of the veth pair; the served torrent names that address for its tracker.

use std::time::Duration;

use crate::common::*;
use crate::common::{dirs, Server};

/// bitseed on the host end of `ns` publishes a 3 MiB file (192 pieces) and a folder as v1
/// torrents, which one Transmission with `settings` downloads at once, web seed removed: every
/// byte comes over the peer wire. (Transmission 3.00 cannot read hybrid or v2 torrents at all:
/// "Error parsing .torrent file", the same for libtorrent's hybrid torrent of the same file.)
fn transmission_case(settings: TransmissionSettings, transport: &str, encryption: &str) {
    if !have_transmission() {
        return;
    }
    let ns = Netns::new();
    let host = format!("{}:0", ns.host);
    let d = dirs();
    std::fs::write(d.content.join("one.bin"), data(3 << 20, 41)).unwrap();
    write_tree(
        &d.content.join("pack"),
        &[("a.bin", 1 << 20), ("sub/b.bin", 100_001)],
    );
    let server = Server::start(
        &d.content,
        &d.state,
        &["--http", &host, "--peer", &host, "--udp", &host],
    );
    let work = tempfile::tempdir().unwrap();
    let torrents: Vec<_> = ["one.bin", "pack"]
        .iter()
        .map(|name| {
            server.wait_published(name, None);
            torrent_without_web_seed(&server, name, work.path())
        })
        .collect();
    let got = transmission_download(
        &ns,
        work.path(),
        &torrents,
        settings,
        Duration::from_secs(60),
    );
    let out = got.unwrap_or_else(|e| {
        let log = server.log.lock().unwrap().clone();
        let inside = ns.inside.to_string();
        let ours: Vec<&str> = log.lines().filter(|l| l.contains(&inside)).collect();
        panic!("{e}\n--- bitseed's log on {inside}:\n{}", ours.join("\n"))
    });
    for rel in ["one.bin", "pack/a.bin", "pack/sub/b.bin"] {
        assert!(
            std::fs::read(out.join(rel)).unwrap() == std::fs::read(d.content.join(rel)).unwrap(),
            "{rel}: not the published bytes"
        );
    }
    // Over the transport expected, RC4-encrypted: Transmission opens with MSE when it may, and
    // offers RC4 only (plaintext only when it prefers clear text), so `prefer` answers RC4.
    let accepted = |t: &str| {
        server
            .metric(&format!(
                "bitseed_peer_connections_accepted_total{{transport=\"{t}\"}}"
            ))
            .unwrap()
    };
    assert!(
        accepted(transport) >= 2,
        "one connection per torrent over {transport}"
    );
    assert!(
        server
            .metric(&format!(
                "bitseed_peer_handshakes_total{{encryption=\"{encryption}\"}}"
            ))
            .unwrap()
            >= 2
    );
    let sent = server.metric("bitseed_peer_uploaded_bytes_total").unwrap();
    assert!(sent >= (3 << 20) + (1 << 20) + 100_001, "{sent} bytes sent");
}

/// With uTP off, Transmission connects over TCP, encrypted as it prefers.
#[test]
fn transmission_downloads_over_tcp_with_utp_off() {
    transmission_case(
        TransmissionSettings {
            utp: false,
            encryption: Encryption::Preferred,
        },
        "tcp",
        "rc4",
    );
}

/// Transmission as installed: uTP first (3.00 never falls back to TCP after a failed uTP
/// attempt), encryption preferred. It also loses the messages that share a uTP packet with
/// the handshake after an encrypted handshake: the seeder sends its handshake on its own.
#[test]
fn transmission_downloads_at_its_defaults() {
    transmission_case(
        TransmissionSettings {
            utp: true,
            encryption: Encryption::Preferred,
        },
        "utp",
        "rc4",
    );
}

/// Encryption required, uTP off: MSE over TCP.
#[test]
fn transmission_downloads_with_encryption_required() {
    transmission_case(
        TransmissionSettings {
            utp: false,
            encryption: Encryption::Required,
        },
        "tcp",
        "rc4",
    );
}
