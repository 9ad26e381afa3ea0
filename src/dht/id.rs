//! Node ids (BEP 5: 160 bits, XOR distance) and BEP 42's tie of an id to its IPv4 address.
//!
//! BEP 42: the first 21 bits of a node id are CRC32-C of the masked address with 3 random bits
//! (kept in the id's last byte), so a node cannot choose its place in the id space (and crowd
//! out the nodes around a torrent) without owning many addresses.

use std::net::Ipv4Addr;

/// A node id or an info hash: both live in the same 160-bit space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// The XOR distance to `other`, comparable as a big-endian number.
    pub fn distance(&self, other: &NodeId) -> [u8; 20] {
        let mut d = [0; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// Bits in common at the front with `other` (160 for itself): the routing table's bucket.
    pub fn common_prefix(&self, other: &NodeId) -> usize {
        let d = self.distance(other);
        for (i, b) in d.iter().enumerate() {
            if *b != 0 {
                return i * 8 + b.leading_zeros() as usize;
            }
        }
        160
    }

    /// A BEP 42 id for `ip`: its 21 bits from the address, the rest from `random`.
    pub fn for_ip(ip: Ipv4Addr, random: [u8; 20]) -> NodeId {
        let r = random[19] & 0x07;
        let crc = ip_crc(ip, r);
        let mut id = random;
        id[0] = (crc >> 24) as u8;
        id[1] = (crc >> 16) as u8;
        id[2] = ((crc >> 8) as u8 & 0xf8) | (random[2] & 0x07);
        id[19] = random[19];
        NodeId(id)
    }

    /// Whether this id is one `ip` may hold under BEP 42. Addresses that are not globally
    /// routed (loopback, private, link-local) are exempt, as the BEP says.
    pub fn valid_for(&self, ip: Ipv4Addr) -> bool {
        if exempt(ip) {
            return true;
        }
        let crc = ip_crc(ip, self.0[19] & 0x07);
        self.0[0] == (crc >> 24) as u8
            && self.0[1] == (crc >> 16) as u8
            && self.0[2] & 0xf8 == (crc >> 8) as u8 & 0xf8
    }
}

/// BEP 42's exemptions: addresses no remote node can see us at.
pub fn exempt(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
}

fn ip_crc(ip: Ipv4Addr, r: u8) -> u32 {
    let masked = (u32::from(ip) & 0x030f_3fff) | (u32::from(r) << 29);
    crc32c(&masked.to_be_bytes())
}

/// CRC32-C (Castagnoli), bit by bit: four bytes per id check, so no table is worth its space.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720's check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// BEP 42's table of example ids: the first 21 bits and the last byte follow from the
    /// address and the random number.
    #[test]
    fn bep42_examples() {
        let cases: [(&str, u8, [u8; 3]); 5] = [
            ("124.31.75.21", 1, [0x5f, 0xbf, 0xbf]),
            ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
            ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
            ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
            ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
        ];
        for (ip, rand, prefix) in cases {
            let ip: Ipv4Addr = ip.parse().unwrap();
            let mut random = [0x11; 20];
            random[19] = rand;
            let id = NodeId::for_ip(ip, random);
            assert_eq!(id.0[..2], prefix[..2], "{ip}");
            assert_eq!(id.0[2] & 0xf8, prefix[2] & 0xf8, "{ip}");
            assert_eq!(id.0[19], rand);
            assert!(id.valid_for(ip));
            let mut other = id;
            other.0[0] ^= 0x80;
            assert!(!other.valid_for(ip), "{ip}");
        }
        assert!(NodeId([0; 20]).valid_for(Ipv4Addr::LOCALHOST));
        assert!(NodeId([0; 20]).valid_for(Ipv4Addr::new(192, 168, 1, 2)));
    }

    #[test]
    fn prefix_and_distance() {
        let a = NodeId([0; 20]);
        let mut b = a;
        assert_eq!(a.common_prefix(&b), 160);
        b.0[0] = 0x80;
        assert_eq!(a.common_prefix(&b), 0);
        b.0[0] = 0;
        b.0[1] = 0x01;
        assert_eq!(a.common_prefix(&b), 15);
        assert_eq!(a.distance(&b)[1], 1);
    }
}
