//! The Linux system calls the standard library lacks: zero-copy file bodies (sendfile(2)) from
//! sealed in-memory copies (memfd_create(2) and its seals, see `snapshot`), a head held back
//! for the body behind it (`MSG_MORE`), and listener options (deferred accept, `TCP_NODELAY`
//! inherited by accepted sockets). Other Unixes do without this module: they keep
//! the copy path of `outgoing` and set their options per socket.
//!
//! This is the crate's only module with `unsafe` (the crate root denies it everywhere else).
//! Each `unsafe` block is exactly one system call, with a `// SAFETY:` comment saying why its
//! descriptors and pointers are valid; each public function is safe to call and has a unit
//! test. Descriptors are always borrowed from their owner (`&TcpStream`, `&File`,
//! `&TcpListener`) for the length of the call, so none can be closed or reused under it; the
//! only pointers are to locals and to slices borrowed for the call.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Sends up to `count` bytes of `file`, from `offset`, to `out` (a socket, or a file) without
/// copying them through user space (sendfile(2)), and returns how many were sent: fewer when
/// a non-blocking socket fills up, 0 when `offset` is at or past the end of the file. A full
/// non-blocking socket gives `WouldBlock`. The file's own position is not used or moved.
pub fn sendfile(out: impl AsFd, file: &File, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    let out = out.as_fd();
    // SAFETY: both descriptors are borrowed from live owners for the whole call; `off` is a
    // local that the kernel reads and updates during the call only.
    let n = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A new anonymous in-memory file (memfd_create(2)), close-on-exec, that can be sealed
/// ([`seal`]). `name` only shows in `/proc/PID/fd` (as `memfd:NAME`).
pub fn memfd(name: &CStr) -> io::Result<File> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a live NUL-terminated string the kernel only reads during the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    let fd = cvt(fd)?;
    // SAFETY: no system call: `fd` was just returned by memfd_create, is open, and nothing
    // else owns it; the `OwnedFd` becomes its one owner and closes it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The seals of a snapshot: no write, no shrinking, no growth, no change of the seals.
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Seals an in-memory file for good: from now on the kernel refuses every write, truncate and
/// growth of it, through any descriptor or mapping, and any change of the seals. Fails with
/// `EBUSY` while a writable shared mapping of it exists (we never map it).
pub fn seal(memfd: &File) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; F_ADD_SEALS
    // takes an integer argument, no pointer.
    let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
    cvt(r).map(|_| ())
}

/// Whether `memfd` carries every seal [`seal`] sets.
#[cfg(test)]
pub fn is_sealed(memfd: &File) -> io::Result<bool> {
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; F_GET_SEALS
    // takes no argument.
    let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(cvt(r)? & SEALS == SEALS)
}

/// Whether [`sendfile`] can address a file up to `end` (its offsets are `off_t`, 32 bits on
/// some 32-bit targets).
pub fn sendfile_reaches(end: u64) -> bool {
    libc::off_t::try_from(end).is_ok()
}

/// Writes `buf` to `socket` with `MSG_MORE`: the kernel holds back a segment that is not full
/// until the next write, so a response head leaves in the same segment as the first bytes of
/// the body written right after it. Returns how many bytes the socket took (`WouldBlock`
/// when a non-blocking socket is full). `MSG_NOSIGNAL`: a peer that left is an `EPIPE`, not
/// a signal, as with std's own writes.
pub fn send_more(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; `buf` is a
    // live slice whose pointer and length the kernel only reads, during the call.
    let n = unsafe { libc::send(socket.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `TCP_DEFER_ACCEPT` on a listener: the kernel completes a new connection's handshake but
/// hands it to `accept()` only once its first bytes arrive, or once about `secs` seconds have
/// passed (rounded up to the SYN-ACK retransmission schedule: 1, 3, 7... s); 0 turns it off.
pub fn set_defer_accept(listener: &TcpListener, secs: u32) -> io::Result<()> {
    let secs = libc::c_int::try_from(secs).map_err(|_| io::ErrorKind::InvalidInput)?;
    set_int(
        listener.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        secs,
    )
}

/// The listener's `TCP_DEFER_ACCEPT` in seconds, as the kernel rounded it (0: off).
#[cfg(test)]
pub fn defer_accept(listener: &TcpListener) -> io::Result<u32> {
    let secs = get_opt(
        listener.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        0,
    )?;
    u32::try_from(secs).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Sets a listening socket's backlog: listen(2) again on a socket that listens already, which
/// Linux allows and which only changes the queue bound (capped at `net.core.somaxconn`); on a
/// bound socket that does not listen yet ([`bind_reuse_port`]) it starts listening.
pub fn set_backlog(listener: &TcpListener, backlog: u32) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; no pointer.
    let r = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    cvt(r).map(|_| ())
}

/// A listening socket's backlog as the kernel applies it (for a listener, `TCP_INFO` reports
/// it in `tcpi_sacked`).
#[cfg(test)]
pub fn backlog(listener: &TcpListener) -> io::Result<u32> {
    // SAFETY: no system call: `tcp_info` is plain integers, for which all zeros is valid.
    let info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let info = get_opt(listener.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info)?;
    Ok(info.tcpi_sacked)
}

/// `TCP_NODELAY` on a listener. Linux copies it to every socket the listener accepts (the
/// unit test below checks this), which saves one `setsockopt` per connection.
pub fn set_listener_nodelay(listener: &TcpListener) -> io::Result<()> {
    set_int(listener.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// A [`TcpListener`] on the listening socket at descriptor `fd`, which this process
/// inherited (systemd's socket activation, `--fd`), after checking that it is one: an open
/// descriptor, a socket, of type stream, in the IPv4 or IPv6 family, listening
/// (`SO_ACCEPTCONN`). Anything else is an error with a reason.
///
/// The listener owns a duplicate (close-on-exec, as std makes every socket), never `fd`
/// itself: `fd` is not ours to close (an embedding program could name any descriptor it
/// holds), so it is only read and duplicated, and stays open for the life of the process.
/// When the listener is dropped at the drain, the socket goes on queueing connections
/// (for a successor that shares it, the point of socket activation) until `fd` closes.
pub fn inherited_listener(fd: i32) -> io::Result<TcpListener> {
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    // SAFETY: F_GETFD only reads the descriptor table entry of `fd`; an invalid or closed
    // `fd` is the EBADF error, never undefined behaviour. No pointer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 {
        return Err(refuse(&format!("descriptor {fd} is not open")));
    }
    // From here on `fd` is open; it is borrowed for the checks, owned only once they pass.
    // SAFETY: no system call: `fd` was just seen open, and the borrow lives only for the
    // checks below, during which nothing in this function closes it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock_type = match get_opt(borrowed, libc::SOL_SOCKET, libc::SO_TYPE, 0 as libc::c_int) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(refuse(&format!("descriptor {fd} is not a socket")))
        }
        Err(e) => return Err(e),
    };
    let domain = get_opt(
        borrowed,
        libc::SOL_SOCKET,
        libc::SO_DOMAIN,
        0 as libc::c_int,
    )?;
    if sock_type != libc::SOCK_STREAM || !matches!(domain, libc::AF_INET | libc::AF_INET6) {
        return Err(refuse(&format!("descriptor {fd} is not a TCP socket")));
    }
    let listening = get_opt(
        borrowed,
        libc::SOL_SOCKET,
        libc::SO_ACCEPTCONN,
        0 as libc::c_int,
    )?;
    if listening != 1 {
        return Err(refuse(&format!(
            "descriptor {fd} is a TCP socket that is not listening"
        )));
    }
    // SAFETY: F_DUPFD_CLOEXEC on the open `fd` makes a new descriptor for the same socket
    // (the lowest free number, close-on-exec) and touches nothing else. No pointer.
    let dup = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: no system call: `dup` was just made for us by F_DUPFD_CLOEXEC, is open, and
    // nothing else in the process knows it, so this is its one owner.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    Ok(TcpListener::from(owned))
}

/// A listening TCP socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as std sets),
/// so that several processes of the same user may listen on one port and the kernel spreads
/// new connections among them (`--reuse-port`). std's `TcpListener::bind` cannot set an
/// option between socket(2) and bind(2), which is where this one must go.
pub fn bind_reuse_port(addr: std::net::SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let domain = match addr {
        std::net::SocketAddr::V4(_) => libc::AF_INET,
        std::net::SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) takes only integers; a new descriptor or -1 comes back.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: no system call: `fd` was just returned by socket(2), is open, and nothing else
    // owns it; from here on `owned` closes it, on every error path too.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(owned.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int(owned.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let (storage, len) = sockaddr(addr);
    let ptr: *const libc::sockaddr_storage = &storage;
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; `ptr`
    // points to a local `sockaddr_storage` holding a valid address of `len` bytes, which
    // the kernel only reads.
    cvt(unsafe { libc::bind(owned.as_raw_fd(), ptr.cast(), len) })?;
    let listener = TcpListener::from(owned);
    set_backlog(&listener, backlog)?;
    Ok(listener)
}

/// `addr` as the C socket address bind(2) reads, and its length.
fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: no system call: `sockaddr_storage` is plain integers, for which all zeros is
    // valid (and is what the unset fields must be).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            let dst: *mut libc::sockaddr_storage = &mut storage;
            // SAFETY: no system call: `sockaddr_storage` is larger than and aligned for any
            // socket address, so a `sockaddr_in` fits at its start.
            unsafe { dst.cast::<libc::sockaddr_in>().write(sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            let dst: *mut libc::sockaddr_storage = &mut storage;
            // SAFETY: no system call: as above, a `sockaddr_in6` fits at the start.
            unsafe { dst.cast::<libc::sockaddr_in6>().write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A system call's `int` result: -1 is the error in `errno`, anything else is the value.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Sets an integer socket option.
fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let value: *const libc::c_int = &value;
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; `value`
    // points to a local `c_int` and `len` is its size, which the kernel only reads.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.cast(), len) };
    cvt(r).map(|_| ())
}

/// Reads a socket option into `value`, a C struct of plain integers (or one integer): the
/// kernel fills at most its size, and any bytes it leaves keep their value from `value`.
fn get_opt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    mut value: T,
) -> io::Result<T> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    let ptr: *mut T = &mut value;
    // SAFETY: the descriptor is borrowed from its live owner for the whole call; `ptr` and
    // `len` point to locals, `len` says the kernel may write at most one `T`, and every
    // caller's `T` is plain integers, valid for whatever bytes the kernel writes.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, ptr.cast(), &mut len) };
    cvt(r).map(|_| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (a, b)
    }

    fn temp_file(data: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("poolserve-sys-{}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        let f = File::open(&path).unwrap();
        (path, f)
    }

    #[test]
    fn an_inherited_listener_is_taken_only_when_it_is_a_listening_tcp_socket() {
        // A listening socket: taken, and it accepts.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = listener.as_raw_fd();
        let taken = inherited_listener(fd).expect("a listening TCP socket");
        assert_eq!(taken.local_addr().unwrap(), addr);
        // A duplicate: dropping it leaves `fd` to its owner, still listening.
        assert_ne!(taken.as_raw_fd(), fd);
        let again = inherited_listener(fd).expect("still open and listening");
        drop(taken);
        assert_eq!(listener.local_addr().unwrap(), addr);
        let taken = again;
        let _client = TcpStream::connect(addr).unwrap();
        assert!(taken.accept().is_ok());
        // Close-on-exec, like every socket std makes.
        // SAFETY: F_GETFD only reads the flags of the descriptor `taken` owns.
        let flags = unsafe { libc::fcntl(taken.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // Everything else is refused with its reason, and stays with its owner.
        let (connected, _peer) = pair();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix_path =
            std::env::temp_dir().join(format!("poolserve-sys-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&unix_path);
        let unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
        let file = File::open("/dev/null").unwrap();
        for (fd, why) in [
            (
                connected.as_raw_fd(),
                "is a TCP socket that is not listening",
            ),
            (udp.as_raw_fd(), "is not a TCP socket"),
            (unix.as_raw_fd(), "is not a TCP socket"),
            (file.as_raw_fd(), "is not a socket"),
            (1_000_000, "is not open"),
        ] {
            let err = inherited_listener(fd).expect_err(why);
            assert_eq!(err.to_string(), format!("descriptor {fd} {why}"));
        }
        // The refused ones are still open and usable by their owners.
        assert!(file.metadata().is_ok() && connected.peer_addr().is_ok());
        std::fs::remove_file(unix_path).unwrap();
    }

    #[test]
    fn reuse_port_listeners_share_a_port_and_plain_ones_do_not() {
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(first) = bind_reuse_port(any.parse().unwrap(), 128) else {
                assert!(any.starts_with('['), "IPv4 loopback must work");
                continue; // no IPv6 on this machine
            };
            let addr = first.local_addr().unwrap();
            let second = bind_reuse_port(addr, 128).expect("a second listener on the same port");
            assert_eq!(second.local_addr().unwrap(), addr);
            let plain = TcpListener::bind(addr).expect_err("a listener without SO_REUSEPORT");
            assert_eq!(plain.kind(), io::ErrorKind::AddrInUse);
            // Both accept: the kernel spreads connections between them.
            let clients: Vec<TcpStream> =
                (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
            first.set_nonblocking(true).unwrap();
            second.set_nonblocking(true).unwrap();
            let count = |l: &TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
            let (a, b) = (count(&first), count(&second));
            assert_eq!(a + b, clients.len());
            assert!(a > 0 && b > 0, "{a} and {b}");
        }
    }

    #[test]
    fn sendfile_sends_from_the_offset_and_says_when_the_file_ends() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (path, file) = temp_file(&data);
        let (tx, mut rx) = pair();
        assert_eq!(sendfile(&tx, &file, 1000, 5000).unwrap(), 5000);
        let mut got = vec![0; 5000];
        rx.read_exact(&mut got).unwrap();
        assert!(got == data[1000..6000]);
        // Past the end: fewer bytes, then none.
        assert_eq!(sendfile(&tx, &file, 99_990, 100).unwrap(), 10);
        assert_eq!(sendfile(&tx, &file, 100_000, 100).unwrap(), 0);
        let mut tail = [0; 10];
        rx.read_exact(&mut tail).unwrap();
        assert_eq!(tail, data[99_990..]);
        assert!(
            sendfile(&tx, &file, u64::MAX, 1).is_err(),
            "offset beyond off_t"
        );
        assert!(sendfile_reaches(1 << 31) || std::mem::size_of::<libc::off_t>() == 4);
        // A full non-blocking socket says so.
        tx.set_nonblocking(true).unwrap();
        let full = loop {
            match sendfile(&tx, &file, 0, data.len()) {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn send_more_writes_the_bytes_and_a_closed_peer_is_an_error_not_a_signal() {
        let (tx, mut rx) = pair();
        assert_eq!(send_more(&tx, b"head ").unwrap(), 5);
        (&tx).write_all(b"body").unwrap();
        let mut got = [0; 9];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"head body");
        drop(rx);
        // The first write after the peer closed may still be taken; the next one fails.
        let err = (0..100)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                send_more(&tx, b"x").err()
            })
            .expect("writes to a closed peer fail");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_sealed_memfd_keeps_its_bytes_and_refuses_every_change() {
        use std::os::unix::fs::FileExt;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (path, file) = temp_file(&data);
        let mem = memfd(c"poolserve-test").unwrap();
        assert!(!is_sealed(&mem).unwrap());
        // sendfile into a file: an in-kernel copy, from the offset.
        let mut done = 0;
        while done < data.len() {
            let n = sendfile(&mem, &file, done as u64, data.len() - done).unwrap();
            assert!(n > 0);
            done += n;
        }
        seal(&mem).unwrap();
        assert!(is_sealed(&mem).unwrap());
        assert!(mem.write_at(b"x", 0).is_err(), "a write is refused");
        assert!(mem.set_len(10).is_err(), "a truncate is refused");
        assert!(mem.set_len(1 << 20).is_err(), "growth is refused");
        let mut got = vec![0; data.len()];
        mem.read_exact_at(&mut got, 0).unwrap();
        assert!(got == data);
        // And it goes on to a socket from an offset.
        let (tx, mut rx) = pair();
        assert_eq!(sendfile(&tx, &mem, 299_000, 5000).unwrap(), 1000);
        let mut tail = vec![0; 1000];
        rx.read_exact(&mut tail).unwrap();
        assert!(tail == data[299_000..]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn defer_accept_is_set_read_back_and_turned_off() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(defer_accept(&l).unwrap(), 0);
        set_defer_accept(&l, 1).unwrap();
        assert_eq!(defer_accept(&l).unwrap(), 1);
        // Rounded up to the retransmission schedule (1 + 2 + 4 s).
        set_defer_accept(&l, 5).unwrap();
        assert_eq!(defer_accept(&l).unwrap(), 7);
        set_defer_accept(&l, 0).unwrap();
        assert_eq!(defer_accept(&l).unwrap(), 0);
        assert!(set_defer_accept(&l, u32::MAX).is_err());
    }

    #[test]
    fn the_backlog_is_raised_on_a_listening_socket() {
        // Below 128, the oldest kernels' `somaxconn`, so no cap applies.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        for n in [100, 60] {
            set_backlog(&l, n).unwrap();
            assert_eq!(backlog(&l).unwrap(), n);
        }
        assert!(set_backlog(&l, u32::MAX).is_err());
        // Still listening.
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        l.accept().unwrap();
    }

    #[test]
    fn a_listeners_nodelay_is_inherited_by_the_sockets_it_accepts() {
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(plain.local_addr().unwrap()).unwrap();
        assert!(!plain.accept().unwrap().0.nodelay().unwrap());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_listener_nodelay(&l).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "Linux passes TCP_NODELAY on");
    }
}
