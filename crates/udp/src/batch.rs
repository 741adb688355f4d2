//! Many datagrams per system call. On Linux the server receives with
//! `recvmmsg` (nix's safe wrapper) and sends its replies with `sendmmsg`
//! (rustix's): at UDP's cost per message the system call itself is a good
//! part of the price, and a socket that is busy holds several datagrams by
//! the time the loop comes back to it. Elsewhere one `recv_from` and one
//! `send_to` at a time, behind the same two types.
//!
//! ```text
//!  Inbox: one buffer of batch × (limit + 1) bytes, cut in slots
//!  +-----------+-----------+-----+
//!  | slot 0    | slot 1    | ... |   one recvmmsg fills slots 0..n
//!  +-----------+-----------+-----+   (a datagram over `limit` fills its
//!                                     slot and shows as too large)
//!  Outbox: the replies of one batch, sent by one sendmmsg
//! ```

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams one call receives or sends: a batch's slices live on
/// the stack. quinn's endpoint reads 32 at a time; more gains little once
/// the system call is a small part of each datagram's cost.
pub(crate) const MAX_BATCH: usize = 64;

/// A batch size as configured, made to mean something: 1 to [`MAX_BATCH`].
pub(crate) fn effective(batch: usize) -> usize {
    batch.clamp(1, MAX_BATCH)
}

/// Received datagrams: up to `slots` per [`recv`](Inbox::recv), each in its
/// own slot of `limit + 1` bytes.
pub(crate) struct Inbox {
    /// `slots × stride` bytes, zeroed once. A large allocation comes from
    /// fresh pages, so only the pages datagrams reach become resident.
    buf: Vec<u8>,
    stride: usize,
    slots: usize,
    /// Length and sender of each datagram of the last batch.
    got: Vec<(usize, SocketAddr)>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("slots", &self.slots)
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Room for `slots` datagrams (see [`effective`]) of up to `limit`
    /// bytes each, plus one byte each to tell a longer one.
    pub(crate) fn new(slots: usize, limit: usize) -> Inbox {
        let slots = effective(slots);
        let stride = limit + 1;
        Inbox {
            buf: vec![0; slots * stride],
            stride,
            slots,
            got: Vec::with_capacity(slots),
        }
    }

    /// Waits for at least one datagram, then takes as many as are queued,
    /// up to the number of slots; returns how many.
    ///
    /// # Cancel safety
    /// Cancel-safe: datagrams are either received or left in the socket.
    pub(crate) async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        #[cfg(target_os = "linux")]
        {
            use std::io::IoSliceMut;
            use std::os::fd::AsRawFd;

            use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrLike};

            let fd = socket.as_raw_fd();
            let (buf, stride, slots, got) = (&mut self.buf, self.stride, self.slots, &mut self.got);
            socket
                .async_io(Interest::READABLE, || {
                    // Made per call: nix's headers hold raw pointers, so
                    // they cannot live in a future that moves between
                    // threads (two small allocations a batch).
                    let mut headers =
                        MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(slots, None);
                    let mut chunks = buf.chunks_mut(stride);
                    let mut slices: [[IoSliceMut<'_>; 1]; MAX_BATCH] = std::array::from_fn(|_| {
                        [IoSliceMut::new(chunks.next().unwrap_or_default())]
                    });
                    let received = recvmmsg(
                        fd,
                        &mut headers,
                        slices.iter_mut().take(slots),
                        MsgFlags::empty(),
                        None,
                    )?;
                    for msg in received {
                        // A datagram always has an IP sender on an IP socket;
                        // one without (none seen) is skipped, not misrouted.
                        let from = msg.address.and_then(|a| {
                            a.as_sockaddr_in()
                                .map(|v4| SocketAddr::V4((*v4).into()))
                                .or_else(|| {
                                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                                })
                                .filter(|_| a.len() > 0)
                        });
                        match from {
                            Some(from) => got.push((msg.bytes, from)),
                            None => got.push((usize::MAX, SocketAddr::from(([0, 0, 0, 0], 0)))),
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (n, from) = socket.recv_from(&mut self.buf[..self.stride]).await?;
            self.got.push((n, from));
        }
        Ok(self.got.len())
    }

    /// The `i`th datagram of the last batch: its bytes (`limit + 1` of
    /// them when it was longer than `limit`) and its sender; `None` for a
    /// datagram without an IP sender.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, from) = *self.got.get(i)?;
        if len == usize::MAX {
            return None;
        }
        let start = i * self.stride;
        Some((&self.buf[start..start + len.min(self.stride)], from))
    }
}

/// Replies waiting to be sent together, at most [`MAX_BATCH`] at a time.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    replies: Vec<(Bytes, SocketAddr)>,
}

impl Outbox {
    pub(crate) fn with_capacity(n: usize) -> Outbox {
        Outbox {
            replies: Vec::with_capacity(effective(n)),
        }
    }

    pub(crate) fn push(&mut self, reply: Bytes, to: SocketAddr) {
        self.replies.push((reply, to));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Sends every reply queued, in order, and empties the box. A reply
    /// the socket refuses is handed to `failed` and skipped; the others
    /// still go. Returns how many were sent.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a reply may have been sent or not; whatever is left
    /// stays queued until the next flush or the box is dropped.
    pub(crate) async fn flush(
        &mut self,
        socket: &UdpSocket,
        mut failed: impl FnMut(io::Error, SocketAddr),
    ) -> u64 {
        let mut next = 0;
        let mut sent = 0u64;
        while next < self.replies.len() {
            let pending = &self.replies[next..];
            match send_some(socket, pending).await {
                Ok(n) => {
                    next += n;
                    sent += n as u64;
                }
                // The first reply of those left failed: report it, go on.
                Err(e) => {
                    failed(e, pending[0].1);
                    next += 1;
                }
            }
        }
        self.replies.clear();
        sent
    }
}

/// Sends some of `replies` (at least the first, unless it fails), waiting
/// while the socket's send buffer is full; returns how many went.
#[cfg(target_os = "linux")]
async fn send_some(socket: &UdpSocket, replies: &[(Bytes, SocketAddr)]) -> io::Result<usize> {
    use std::io::IoSlice;

    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

    let n = replies.len().min(MAX_BATCH);
    socket
        .async_io(Interest::WRITABLE, || {
            // `None` past `n`: nothing built for slots not used.
            let addrs: [Option<SocketAddrAny>; MAX_BATCH] =
                std::array::from_fn(|i| replies.get(i).map(|r| SocketAddrAny::from(r.1)));
            let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(replies.get(i).map_or(&[][..], |r| &r.0[..]))]
            });
            let mut controls: [SendAncillaryBuffer<'_, '_, '_>; MAX_BATCH] =
                std::array::from_fn(|_| SendAncillaryBuffer::default());
            let mut msgs: Vec<MMsgHdr<'_>> = addrs
                .iter()
                .flatten()
                .zip(&iovs)
                .zip(&mut controls)
                .take(n)
                .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
                .collect();
            Ok(sendmmsg(socket, &mut msgs, SendFlags::empty())?)
        })
        .await
}

#[cfg(not(target_os = "linux"))]
async fn send_some(socket: &UdpSocket, replies: &[(Bytes, SocketAddr)]) -> io::Result<usize> {
    let (reply, to) = &replies[0];
    socket.send_to(reply, to).await.map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_kept_within_what_a_call_can_carry() {
        assert_eq!(effective(0), 1);
        assert_eq!(effective(32), 32);
        assert_eq!(effective(usize::MAX), MAX_BATCH);
        let inbox = Inbox::new(1_000, 100);
        assert_eq!(
            inbox.buf.len(),
            MAX_BATCH * 101,
            "memory is batch × (limit + 1)"
        );
    }

    #[tokio::test]
    async fn a_queued_burst_comes_in_one_call_and_goes_back_in_one() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 3], to).await.unwrap();
        }
        // A datagram over the limit (4) fills its slot: 5 bytes back.
        client.send_to(&[9; 40], to).await.unwrap();
        let mut inbox = Inbox::new(8, 4);
        let mut n = 0;
        // Loopback delivers at once; allow the last ones a second call.
        while n < 6 {
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), inbox.recv(&server))
                .await
                .unwrap()
                .unwrap();
            if cfg!(target_os = "linux") && n == 0 {
                assert!(got > 1, "one call took {got}");
            }
            let mut out = Outbox::with_capacity(8);
            for i in 0..got {
                let (bytes, from) = inbox.get(i).unwrap();
                assert_eq!(from, client.local_addr().unwrap());
                if n + i < 5 {
                    assert_eq!(bytes, [(n + i) as u8; 3]);
                } else {
                    assert_eq!(bytes, [9; 5]);
                }
                out.push(Bytes::copy_from_slice(bytes), from);
            }
            let sent = out.flush(&server, |e, _| panic!("{e}")).await;
            assert_eq!(sent, got as u64);
            assert!(out.is_empty());
            n += got;
        }
        let mut buf = [0; 64];
        for i in 0..5u8 {
            let len = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], [i; 3], "replies keep their order");
        }
        let len = client.recv(&mut buf).await.unwrap();
        assert_eq!(len, 5);
    }
}
