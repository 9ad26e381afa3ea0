//! UDP connection IDs (BEP 15) that need no state per client: the minute the ID was issued and a
//! MAC of the client's address, port and that minute under a secret key.
//!
//! ```text
//! 64-bit connection id = issued minute (16 bits, wrapping) | SipHash-2-4(key, ip16 ‖ port ‖ minute) (48 bits)
//! ```
//! The key lives in the state folder so a restart does not invalidate every client's ID, and the
//! minute is wall-clock (UNIX) time for the same reason.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use super::siphash::siphash24;

/// IDs are accepted while at most this many whole minutes old: at least 9 minutes, at most 10.
/// BEP 15 asks for 2; some clients reuse IDs later than that.
pub const MAX_AGE_MINUTES: u16 = 9;

const KEY_FILE: &str = "tracker-udp.key";

#[derive(Clone)]
pub struct ConnectionIds {
    key: [u8; 16],
}

impl ConnectionIds {
    pub fn with_key(key: [u8; 16]) -> Self {
        ConnectionIds { key }
    }

    /// Loads the key from `state_dir`, creating it (random, owner-only) the first time.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Self> {
        let path = state_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 16 => {
                let mut key = [0u8; 16];
                key.copy_from_slice(&bytes);
                return Ok(Self::with_key(key));
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 16-byte key", path.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = random_key()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)?.write_all(&key)?;
        Ok(Self::with_key(key))
    }

    /// The ID to hand `client` at `unix_secs`.
    pub fn issue(&self, client: SocketAddr, unix_secs: u64) -> u64 {
        let minute = (unix_secs / 60) as u16;
        (u64::from(minute) << 48) | self.mac(client, minute)
    }

    /// Whether `id` was issued to `client` within the last [`MAX_AGE_MINUTES`] minutes.
    pub fn check(&self, id: u64, client: SocketAddr, unix_secs: u64) -> bool {
        let issued = (id >> 48) as u16;
        let now = (unix_secs / 60) as u16;
        now.wrapping_sub(issued) <= MAX_AGE_MINUTES && self.mac(client, issued) == id & MAC_MASK
    }

    fn mac(&self, client: SocketAddr, minute: u16) -> u64 {
        let mut msg = [0u8; 20];
        let ip = match client {
            SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
            SocketAddr::V6(a) => *a.ip(),
        };
        msg[..16].copy_from_slice(&ip.octets());
        msg[16..18].copy_from_slice(&client.port().to_be_bytes());
        msg[18..].copy_from_slice(&minute.to_be_bytes());
        siphash24(&self.key, &msg) & MAC_MASK
    }
}

const MAC_MASK: u64 = (1 << 48) - 1;

fn random_key() -> std::io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> ConnectionIds {
        ConnectionIds::with_key([7; 16])
    }

    const T: u64 = 1_700_000_000;

    #[test]
    fn accepted_for_nine_minutes_then_refused() {
        let client: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let id = ids().issue(client, T);
        assert!(ids().check(id, client, T));
        assert!(ids().check(id, client, T + 9 * 60));
        assert!(!ids().check(id, client, T + 11 * 60));
        // Issued "in the future" (clock went back or forged minute): refused.
        assert!(!ids().check(id, client, T - 120));
    }

    #[test]
    fn bound_to_address_port_and_key() {
        let client: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let id = ids().issue(client, T);
        assert!(!ids().check(id, "10.0.0.2:6881".parse().unwrap(), T));
        assert!(!ids().check(id, "10.0.0.1:6882".parse().unwrap(), T));
        assert!(!ConnectionIds::with_key([8; 16]).check(id, client, T));
        assert!(!ids().check(id ^ 1, client, T));
    }

    #[test]
    fn key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = ConnectionIds::load_or_create(dir.path()).unwrap();
        let b = ConnectionIds::load_or_create(dir.path()).unwrap();
        let client: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(b.check(a.issue(client, T), client, T));
    }
}
