//! What the server and the client share: the datagram size limit, and
//! receiving with truncation detected.

use bytes::{Bytes, BytesMut};
use enchufe_framing::Encode;
use tokio::net::UdpSocket;

use crate::{Error, Result};

/// Default `max_datagram`: 65,507 bytes, the largest payload a UDP datagram
/// can carry over IPv4 (65,535 in the IP length field, less 20 bytes of IP
/// header and 8 of UDP header). Datagrams that large are fragmented by IP
/// and lost whole if any fragment is; protocols that care keep theirs under
/// the path MTU (about 1,200 bytes on the open internet), and can lower the
/// limit to say so.
pub const MAX_DATAGRAM: usize = 65_507;

/// The largest limit that means anything: a UDP payload over IPv6 without
/// jumbograms (65,535 less the 8-byte UDP header). Larger limits act as this
/// one, so no configuration can make a receive buffer grow further.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_527;

/// A configured limit, capped at what UDP can carry.
pub(crate) fn effective(limit: usize) -> usize {
    limit.min(MAX_UDP_PAYLOAD)
}

/// Encodes `msg` and checks it fits in one datagram of `limit` bytes.
pub(crate) fn encode<M: Encode>(msg: M, limit: usize) -> Result<Bytes> {
    let bytes = msg.encode().map_err(Error::Encode)?;
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

/// A receive buffer for datagrams of at most `limit` bytes: one byte larger,
/// so that a longer datagram fills it and shows as over the limit instead of
/// being silently cut by the OS to the buffer's size.
pub(crate) fn buffer(limit: usize) -> BytesMut {
    BytesMut::with_capacity(limit + 1)
}

/// The datagram just received into `buf` (emptied for the next one), copied
/// out at its own size so the big buffer is reused, or
/// [`Error::Truncated`] if it was over `limit`.
pub(crate) fn take(buf: &mut BytesMut, limit: usize) -> Result<BytesMut> {
    let got = if buf.len() > limit {
        Err(Error::Truncated { limit })
    } else {
        Ok(BytesMut::from(&buf[..]))
    };
    buf.clear();
    got
}

/// Receives one datagram from a connected socket into a fresh buffer.
///
/// # Cancel safety
/// Cancel-safe: a datagram is either received whole or left in the socket.
pub(crate) async fn recv_connected(socket: &UdpSocket, limit: usize) -> std::io::Result<BytesMut> {
    let mut buf = buffer(limit);
    socket.recv_buf(&mut buf).await?;
    Ok(buf)
}

/// Whether the `n`th event of a kind should be logged: the 1st, 2nd, 4th,
/// 8th... so a flood of bad datagrams costs a log line per doubling, not one
/// per datagram, and needs no clock.
/// Asks the kernel for receive and send buffers of these sizes
/// (`SO_RCVBUF`, `SO_SNDBUF`); `None` leaves the system default. Linux
/// doubles the value for its bookkeeping and caps it at
/// `net.core.rmem_max` / `wmem_max` without an error, so what was granted
/// is read back with [`buffer_sizes`].
pub(crate) fn set_buffers(
    socket: &UdpSocket,
    recv: Option<usize>,
    send: Option<usize>,
) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if let Some(bytes) = recv {
        sock.set_recv_buffer_size(bytes)?;
    }
    if let Some(bytes) = send {
        sock.set_send_buffer_size(bytes)?;
    }
    Ok(())
}

/// The receive and send buffer sizes the kernel granted, in bytes.
pub(crate) fn buffer_sizes(socket: &UdpSocket) -> std::io::Result<(usize, usize)> {
    let sock = socket2::SockRef::from(socket);
    Ok((sock.recv_buffer_size()?, sock.send_buffer_size()?))
}

pub(crate) fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_over_the_limit_is_reported_not_cut() {
        let mut buf = buffer(4);
        buf.extend_from_slice(b"hola");
        assert_eq!(&take(&mut buf, 4).unwrap()[..], b"hola");
        assert!(buf.is_empty() && buf.capacity() >= 5, "reused");
        buf.extend_from_slice(b"hola!");
        assert!(matches!(
            take(&mut buf, 4),
            Err(Error::Truncated { limit: 4 })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_are_capped_and_checked_before_sending() {
        assert_eq!(effective(usize::MAX), MAX_UDP_PAYLOAD);
        assert_eq!(effective(512), 512);
        assert!(matches!(
            encode("hola", 3),
            Err(Error::TooLarge { size: 4, limit: 3 })
        ));
        assert_eq!(&encode("hola", 4).unwrap()[..], b"hola");
    }

    #[test]
    fn logging_thins_out_as_a_count_grows() {
        let logged: Vec<u64> = (1..=100).filter(|&n| worth_logging(n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
    }
}
