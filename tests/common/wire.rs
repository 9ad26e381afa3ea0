//! The peer wire spoken by hand: handshakes, messages, a checking downloader.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bitseed::metainfo::{InfoHash, Metainfo};
use bitseed::peer::extended::hashpiece;
use bitseed::peer::{BlockRef, Handshake, Message};
use sha1::{Digest, Sha1};

/// Reads until one whole message is in `buf`; `None` when the peer closed.
pub fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
    loop {
        if let Some((m, used)) = Message::parse(buf, 1 << 20).expect("seeder sent a bad frame") {
            buf.drain(..used);
            return Some(m);
        }
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub fn connect(addr: SocketAddr, info_hash: InfoHash) -> (TcpStream, Vec<u8>) {
    handshake(TcpStream::connect(addr).unwrap(), info_hash)
}

/// Our handshake on a connected stream, and the seeder's checked.
pub fn handshake(mut s: TcpStream, info_hash: InfoHash) -> (TcpStream, Vec<u8>) {
    // A bound on every read: a seeder that never answers fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&Handshake::ours(info_hash, *b"-TC0001-testclient00", false).serialize())
        .unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).unwrap();
    let theirs = Handshake::parse(&hs).unwrap().unwrap();
    assert_eq!(theirs.info_hash, info_hash);
    (s, Vec::new())
}

/// One request frame.
pub fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
    Message::Request(BlockRef {
        index,
        begin,
        length,
    })
    .to_bytes()
}

/// A BEP 30 hash list: (tree offset, hash) pairs.
type HashList = Vec<(u32, [u8; 20])>;

/// Our downloader: asks for every block, checks each piece (SHA-1 from the torrent, or for a
/// Merkle torrent through the hash list of its first block against the root hash), and returns
/// the piece space's bytes.
pub fn download(addr: SocketAddr, meta: &Metainfo) -> Vec<u8> {
    let (mut s, mut buf) = connect(addr, meta.info_hash.wire().unwrap());
    let merkle = meta.root_hash.is_some();
    let mut out = Vec::new();
    if merkle {
        Message::Extended {
            id: 0,
            payload: b"d1:md12:Tr_hashpiecei5eee".to_vec(),
        }
        .write_to(&mut out);
    }
    Message::Interested.write_to(&mut out);
    s.write_all(&out).unwrap();
    let layout = meta.layout();
    let pieces = layout.piece_count() as u32;
    let mut blocks = Vec::new();
    for p in 0..pieces {
        let (start, end) = layout.piece_range(p.into());
        let mut begin = 0u64;
        while start + begin < end {
            let len = (end - start - begin).min(16384);
            blocks.push(BlockRef {
                index: p,
                begin: begin as u32,
                length: len as u32,
            });
            begin += len;
        }
    }
    let mut data = vec![0u8; layout.total as usize];
    let mut lists: Vec<Option<HashList>> = vec![None; pieces as usize];
    let mut next = 0;
    let mut received = 0;
    let mut unchoked = false;
    while received < blocks.len() {
        if unchoked {
            let mut req = Vec::new();
            while next < blocks.len() && next < received + 64 {
                Message::Request(blocks[next]).write_to(&mut req);
                next += 1;
            }
            s.write_all(&req).unwrap();
        }
        let msg = read_message(&mut s, &mut buf).expect("seeder closed the good download");
        let (index, begin, bytes, list) = match msg {
            Message::Unchoke => {
                unchoked = true;
                continue;
            }
            Message::Choke => panic!("choked while downloading"),
            Message::Piece { index, begin, data } => {
                assert!(
                    !merkle,
                    "a Merkle seed must send Tr_hashpiece to a peer that speaks it"
                );
                (index, begin, data, vec![])
            }
            Message::Extended { id: 5, payload } => {
                let hp = hashpiece::parse(&payload).unwrap();
                (hp.index, hp.begin, hp.data, hp.hashes)
            }
            _ => continue,
        };
        let at = layout.piece_range(index.into()).0 as usize + begin as usize;
        data[at..at + bytes.len()].copy_from_slice(&bytes);
        if merkle && begin == 0 {
            lists[index as usize] = Some(list);
        } else {
            assert!(list.is_empty(), "only a piece's first block carries hashes");
        }
        received += 1;
    }
    for p in 0..pieces {
        let (start, end) = layout.piece_range(p.into());
        let hash: [u8; 20] = Sha1::digest(&data[start as usize..end as usize]).into();
        if merkle {
            let list = lists[p as usize]
                .as_ref()
                .expect("hash list for every piece");
            assert!(
                hashpiece::verify(p, pieces, hash, list, meta.root_hash.unwrap()),
                "piece {p} does not verify against the root hash"
            );
        } else {
            assert_eq!(hash, meta.pieces[p as usize], "piece {p}");
        }
    }
    data
}

pub fn wait_unchoke(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut out = Vec::new();
    Message::Interested.write_to(&mut out);
    s.write_all(&out).unwrap();
    loop {
        match read_message(s, buf) {
            Some(Message::Unchoke) => return,
            Some(_) => continue,
            None => panic!("closed before unchoke"),
        }
    }
}

pub fn handshake_bytes(ih: InfoHash) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    h.extend_from_slice(ih.as_bytes());
    h.extend_from_slice(b"-XX0001-slowslowslow");
    h
}

/// Handshakes for `ih` on `s`: true when the seeder answers with its own handshake.
pub fn handshake_answered(s: &mut TcpStream, ih: InfoHash) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&handshake_bytes(ih));
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).is_ok() && theirs[28..48] == ih.as_bytes()[..]
}
