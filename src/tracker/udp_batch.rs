//! Batched UDP I/O on Linux: `recvmmsg` / `sendmmsg` move up to [`BATCH`] datagrams per system
//! call, which is most of a UDP tracker's cost once the protocol work is cheap.
//!
//! The `mmsghdr` / `iovec` arrays hold raw pointers, so they are built on the stack inside each
//! call and never kept across an `.await`; only plain buffers live in [`RecvBatch`].

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

pub const BATCH: usize = 32;
/// Largest datagram read whole; a longer one is cut (and then fails to parse as an announce
/// with options, which is the only request that can be long).
pub const DATAGRAM: usize = 2048;

pub struct RecvBatch {
    pub bufs: Vec<[u8; DATAGRAM]>,
    pub lens: [usize; BATCH],
    pub from: [Option<SocketAddr>; BATCH],
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: vec![[0u8; DATAGRAM]; BATCH],
            lens: [0; BATCH],
            from: [None; BATCH],
        }
    }

    /// Reads up to [`BATCH`] datagrams without blocking; returns how many (at least 1) or
    /// `WouldBlock`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value for these C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = DATAGRAM;
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `msgs` points into `names`, `iovs` or `self.bufs`, which
        // outlive the call, with the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (msgs[i].msg_len as usize).min(DATAGRAM);
            self.from[i] = from_storage(&names[i]);
        }
        Ok(n)
    }
}

/// Sends `datagrams` (answer, destination) without blocking; returns how many went out (at
/// least 1) or `WouldBlock`.
pub fn send(fd: RawFd, datagrams: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    let n = datagrams.len().min(BATCH);
    // SAFETY: all-zero is a valid value for these C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, (data, to)) in datagrams[..n].iter().enumerate() {
        iovs[i].iov_base = data.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = data.len();
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = to_storage(*to, &mut names[i]);
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as in `recv`; the kernel only reads the data buffers.
    let sent =
        unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let out =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = a.port().to_be();
            out.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let out =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for addr in ["192.0.2.1:6881", "[2001:db8::1]:51413", "[fe80::1%2]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(addr, &mut s);
            assert_eq!(from_storage(&s), Some(addr));
        }
    }

    #[test]
    fn batches_go_through_real_sockets() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let msgs: Vec<(&[u8], SocketAddr)> = vec![(b"one", to), (b"two!", to)];
        assert_eq!(send(a.as_raw_fd(), &msgs).unwrap(), 2);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // Wait until both are queued, then read them in one call.
        let mut peek = [0u8; 8];
        b.peek_from(&mut peek).unwrap();
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            match batch.recv(b.as_raw_fd()) {
                Ok(n) => got.extend(
                    (0..n).map(|i| (batch.bufs[i][..batch.lens[i]].to_vec(), batch.from[i])),
                ),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    b.peek_from(&mut peek).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got[0], (b"one".to_vec(), Some(a.local_addr().unwrap())));
        assert_eq!(got[1].0, b"two!");
    }
}
