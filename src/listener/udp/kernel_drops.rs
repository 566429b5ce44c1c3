//! The kernel's drop counter of our UDP sockets, read from `/proc/net/udp` and `udp6`.
//!
//! Owns finding a socket's inode and summing the `drops` column of the lines whose inode is
//! one of ours. Reads only those two files; on systems without them the count stays 0.

use std::io;
use std::os::fd::AsRawFd;

const PROC_FILES: [&str; 2] = ["/proc/net/udp", "/proc/net/udp6"];

/// The inode of a socket, from its `/proc/self/fd` link (`socket:[INODE]`).
pub fn socket_inode(socket: &impl AsRawFd) -> io::Result<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd()))?;
    let text = link.to_string_lossy();
    text.strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not a socket link: {text}")))
}

/// Total drops of the sockets with these inodes, now.
pub fn read_drops(inodes: &[u64]) -> u64 {
    PROC_FILES
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| sum_drops(&text, inodes))
        .sum()
}

/// Sums the last column (`drops`) of the table lines whose 10th column (`inode`) is listed.
pub fn sum_drops(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = columns.get(9)?.parse().ok()?;
            let drops: u64 = columns.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  512: 00000000:1586 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  513: 00000000:1587 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 5
  514: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 999 2 0000000000000000 1000
";

    #[test]
    fn sums_the_drops_of_our_inodes_only() {
        assert_eq!(sum_drops(TABLE, &[4242, 4243]), 22);
        assert_eq!(sum_drops(TABLE, &[4242]), 17);
        assert_eq!(sum_drops(TABLE, &[]), 0);
        assert_eq!(sum_drops("garbage\nnot a table line\n", &[1]), 0);
    }

    #[test]
    fn finds_a_bound_socket_in_the_kernel_table() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(&socket).unwrap();
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        let listed = table
            .lines()
            .any(|l| l.split_whitespace().nth(9) == Some(&inode.to_string()));
        assert!(listed, "inode {inode} not in /proc/net/udp");
        assert_eq!(read_drops(&[inode]), 0);
    }
}
