//! The raw `libc` calls of the UDP listener (the only `unsafe` of the listeners): batched
//! receive with `recvmmsg(2)`, up to `batch` datagrams per system call, `SO_RCVBUFFORCE`, and
//! the drop-everything socket filter of the shutdown drain.
//!
//! Owns the receive buffers and turns what the kernel filled in into safe slices and
//! addresses. It knows nothing of syslog.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// Buffers for one `recvmmsg` call of up to `batch` datagrams of up to `slot_bytes` each.
pub struct MmsgReceiver {
    slot_bytes: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` only ever point into the buffers
// owned by the same value; they are rebuilt before each use and never shared.
unsafe impl Send for MmsgReceiver {}

/// One received datagram.
pub struct Datagram<'a> {
    /// The bytes received (at most the slot size).
    pub data: &'a [u8],
    /// The datagram was longer than the slot and the kernel cut it.
    pub cut: bool,
    pub peer: Option<SocketAddr>,
}

impl MmsgReceiver {
    pub fn new(batch: usize, slot_bytes: usize) -> MmsgReceiver {
        let batch = batch.max(1);
        let slot_bytes = slot_bytes.max(1);
        MmsgReceiver {
            slot_bytes,
            data: vec![0; batch * slot_bytes],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { mem::zeroed() }; batch],
            iovecs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                };
                batch
            ],
            // SAFETY: mmsghdr is plain old data (pointers and integers); all-zero is valid.
            headers: vec![unsafe { mem::zeroed() }; batch],
        }
    }

    /// Receives up to `batch` datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_with(fd, libc::MSG_DONTWAIT)
    }

    /// Receives up to `batch` datagrams from a blocking socket: waits for the first (until
    /// the socket's receive timeout, then `WouldBlock`), then takes only what is queued.
    pub fn recv_wait(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_with(fd, libc::MSG_WAITFORONE)
    }

    fn recv_with(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let batch = self.headers.len();
        for i in 0..batch {
            self.iovecs[i] = libc::iovec {
                iov_base: self.data[i * self.slot_bytes..].as_mut_ptr().cast(),
                iov_len: self.slot_bytes,
            };
            // SAFETY: msghdr is plain old data; all-zero is a valid value (null pointers,
            // zero lengths), and the fields the kernel reads are set right after.
            let mut header: libc::msghdr = unsafe { mem::zeroed() };
            header.msg_name = ptr::from_mut(&mut self.addrs[i]).cast();
            header.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = ptr::from_mut(&mut self.iovecs[i]);
            header.msg_iovlen = 1;
            self.headers[i] = libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            };
        }
        // SAFETY: every header points at an address buffer and one iovec owned by `self`,
        // each iovec at a distinct `slot_bytes` slice of `self.data`; all stay alive and
        // unaliased for the duration of the call, and `batch` is the headers' length.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                batch as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(received as usize)
    }

    /// The `i`th datagram of the last successful [`recv`](Self::recv).
    pub fn datagram(&self, i: usize) -> Datagram<'_> {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(self.slot_bytes);
        Datagram {
            data: &self.data[i * self.slot_bytes..i * self.slot_bytes + len],
            cut: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            peer: socket_addr(&self.addrs[i], header.msg_hdr.msg_namelen),
        }
    }
}

/// Sets `SO_RCVBUFFORCE` (root or CAP_NET_ADMIN: may exceed `net.core.rmem_max`).
pub fn set_recv_buffer_force(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX / 2);
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches a socket filter that drops every datagram arriving from now on (classic BPF, one
/// instruction: `ret #0`). The kernel counts each such datagram in the socket's drop counter
/// (the `drops` column of `/proc/net/udp`), so the shutdown drain reads a queue that no
/// longer grows, and what arrives meanwhile is counted, not silently lost at close.
pub fn drop_new_arrivals(fd: RawFd) -> io::Result<()> {
    /// `BPF_RET | BPF_K`: return the constant `k` (0: keep no byte, drop).
    const BPF_RET_K: u16 = 0x06;
    let mut program = [libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, one valid instruction, both alive for the call;
    // the kernel copies the program.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            ptr::from_ref(&fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Converts a kernel-filled socket address to a `SocketAddr` (IPv4 or IPv6 only).
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than
            // and alignment-compatible with sockaddr_storage.
            let addr = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let addr = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                addr.sin6_flowinfo,
                addr.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn receives_a_batch_with_peers_and_flags_cut_datagrams() {
        let receiver_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver_socket.local_addr().unwrap();
        sender.send_to(b"first", to).unwrap();
        sender
            .send_to(b"a datagram longer than the slot", to)
            .unwrap();
        sender.send_to(b"", to).unwrap();
        let mut receiver = MmsgReceiver::new(8, 16);
        let mut datagrams = Vec::new();
        let received = crate::testutil::wait_until_blocking(Duration::from_secs(5), || {
            match receiver.recv(receiver_socket.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let d = receiver.datagram(i);
                        datagrams.push((d.data.to_vec(), d.cut, d.peer));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            datagrams.len() == 3
        });
        assert!(received, "received only {datagrams:?}");
        let from = Some(sender.local_addr().unwrap());
        assert_eq!(
            datagrams,
            vec![
                (b"first".to_vec(), false, from),
                (b"a datagram longe".to_vec(), true, from),
                (Vec::new(), false, from),
            ]
        );
    }

    #[test]
    fn nothing_queued_is_would_block() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut receiver = MmsgReceiver::new(4, 64);
        let error = receiver.recv(socket.as_raw_fd()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }
}
