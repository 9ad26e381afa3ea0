//! UDP tracker (BEP 15) load generator for bench/tracker.sh: not part of bitseed itself.
//!
//! ```text
//! udp_load SERVER HASHES_FILE fill N         announce N distinct peers (torrent k % hashes,
//!                                            port 1024 + k / hashes), then exit
//! udp_load SERVER HASHES_FILE load SECS [SOCKETS]
//!                                            random announces (numwant 50) for SECS seconds from
//!                                            SOCKETS sockets (default 4), 32 in flight on each;
//!                                            prints "udp announces/s: N"
//! ```
//! HASHES_FILE holds one 40-hex-digit info hash per line.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bitseed::tracker::http_request::{Event, InfoHash};
use bitseed::tracker::udp_protocol::{self, Response};

const WINDOW: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: udp_load SERVER HASHES_FILE (fill N | load SECS [SOCKETS])");
        std::process::exit(2);
    }
    let server: SocketAddr = args[1].parse().expect("server address");
    let hashes: Vec<InfoHash> = std::fs::read_to_string(&args[2])
        .expect("read hashes")
        .lines()
        .filter(|l| l.len() == 40)
        .map(|l| InfoHash::from_hex(l).expect("hex hash"))
        .collect();
    assert!(!hashes.is_empty(), "no hashes");
    let n: u64 = args[4].parse().expect("number");
    match args[3].as_str() {
        "fill" => fill(server, &hashes, n),
        "load" => {
            let sockets: usize = args.get(5).map_or(4, |s| s.parse().expect("sockets"));
            load(server, &hashes, Duration::from_secs(n), sockets)
        }
        other => panic!("unknown mode {other}"),
    }
}

struct Client {
    socket: UdpSocket,
    conn: u64,
    connected_at: Instant,
    server: SocketAddr,
    /// The datagram being sent, reused.
    out: Vec<u8>,
}

impl Client {
    fn new(server: SocketAddr) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut c = Client {
            socket,
            conn: 0,
            connected_at: Instant::now(),
            server,
            out: Vec::with_capacity(98),
        };
        c.connect();
        c
    }

    fn connect(&mut self) {
        const TX: u32 = 0xffff_ffff;
        loop {
            self.out.clear();
            udp_protocol::write_connect_request(TX, &mut self.out);
            self.socket
                .send_to(&self.out, self.server)
                .expect("send connect");
            let mut buf = [0u8; 64];
            // Skip stale announce answers until the connect answer arrives.
            while let Ok(n) = self.socket.recv(&mut buf) {
                if let Ok(Response::Connect {
                    transaction_id: TX,
                    connection_id,
                }) = udp_protocol::parse_response(&buf[..n])
                {
                    self.conn = connection_id;
                    self.connected_at = Instant::now();
                    return;
                }
            }
        }
    }

    fn send(
        &mut self,
        tx: u32,
        hash: &InfoHash,
        port: u16,
        left: u64,
        event: Event,
        num_want: u32,
    ) {
        let mut peer_id = [0u8; 20];
        peer_id[..8].copy_from_slice(b"-BL0001-");
        peer_id[8..].copy_from_slice(format!("{tx:012}").as_bytes());
        let a = udp_protocol::Announce {
            connection_id: self.conn,
            transaction_id: tx,
            info_hash: *hash,
            peer_id,
            downloaded: 0,
            left,
            uploaded: 0,
            event,
            ip: 0,
            key: tx,
            num_want: Some(num_want),
            port,
        };
        self.out.clear();
        udp_protocol::write_announce_request(&a, &mut self.out);
        let _ = self.socket.send_to(&self.out, self.server);
    }
}

/// xorshift64*: enough randomness for picking torrents and ports.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn fill(server: SocketAddr, hashes: &[InfoHash], n: u64) {
    let mut client = Client::new(server);
    let per = hashes.len() as u64;
    let mut buf = [0u8; 2048];
    let mut k = 0u64;
    while k < n {
        let end = (k + WINDOW as u64).min(n);
        for i in k..end {
            let hash = &hashes[(i % per) as usize];
            let port = 1024 + (i / per) as u16;
            let left = if i % 10 == 0 { 0 } else { 1000 };
            client.send(i as u32, hash, port, left, Event::Started, 0);
        }
        let mut got = 0;
        while got < end - k {
            match client.socket.recv(&mut buf) {
                Ok(_) => got += 1,
                // Lost or refused: send this window again (announces are idempotent).
                Err(_) => break,
            }
        }
        if got == end - k {
            k = end;
        } else if client.connected_at.elapsed() > Duration::from_secs(60) {
            client.connect();
        }
    }
    println!("announced {n} distinct peers");
}

fn load(server: SocketAddr, hashes: &[InfoHash], duration: Duration, sockets: usize) {
    let start = Instant::now();
    let threads: Vec<_> = (0..sockets)
        .map(|t| {
            let hashes = hashes.to_vec();
            std::thread::spawn(move || {
                let mut client = Client::new(server);
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1000_0001));
                let mut buf = [0u8; 2048];
                let mut answered = 0u64;
                let send_one = |client: &mut Client, rng: &mut Rng| {
                    let r = rng.next();
                    let hash = &hashes[(r % hashes.len() as u64) as usize];
                    let port = (r >> 20) as u16 | 1;
                    let left = if (r >> 40) & 3 == 0 { 0 } else { r >> 44 };
                    client.send(r as u32, hash, port, left, Event::None, 50);
                };
                for _ in 0..WINDOW {
                    send_one(&mut client, &mut rng);
                }
                while start.elapsed() < duration {
                    match client.socket.recv(&mut buf) {
                        Ok(n)
                            if matches!(
                                udp_protocol::parse_response(&buf[..n]),
                                Ok(Response::Announce { .. })
                            ) =>
                        {
                            answered += 1;
                            send_one(&mut client, &mut rng);
                        }
                        Ok(_) => send_one(&mut client, &mut rng),
                        Err(_) => {
                            if client.connected_at.elapsed() > Duration::from_secs(60) {
                                client.connect();
                            }
                            for _ in 0..WINDOW {
                                send_one(&mut client, &mut rng);
                            }
                        }
                    }
                }
                answered
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let secs = start.elapsed().as_secs_f64();
    println!("udp announces/s: {:.0}", total as f64 / secs);
}
