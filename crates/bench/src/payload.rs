//! Echo payloads, and the check that an echo is exactly what was sent.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};

/// How many distinct payloads a run cycles through. Consecutive frames
/// differ, so a dropped, duplicated, reordered or corrupted echo fails the
/// check; prime, so the cycle never lines up with a window of frames in
/// flight (1, 4, 16, 64). Precomputed, so the generator spends its time on
/// I/O rather than on filling buffers.
const DISTINCT: usize = 13;

/// The payloads of one run: `DISTINCT` pseudo-random buffers of one size.
#[derive(Debug, Clone)]
pub(crate) struct Payloads {
    all: Arc<[Bytes]>,
}

impl Payloads {
    pub(crate) fn new(size: usize) -> Payloads {
        let all = (0..DISTINCT as u64).map(|seed| fill(size, seed)).collect();
        Payloads { all }
    }

    /// The `n`th payload of a stream.
    pub(crate) fn get(&self, n: u64) -> &Bytes {
        &self.all[(n % DISTINCT as u64) as usize]
    }
}

/// `size` bytes from xorshift64*, seeded per payload.
fn fill(size: usize, seed: u64) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0xD129_0E9C_5A4B_27F1);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

/// Fails with [`Error::Mismatch`] unless `echo` is byte for byte `sent`.
pub(crate) fn check(conn: usize, frame: u64, echo: &[u8], sent: &[u8]) -> Result<()> {
    if echo == sent {
        return Ok(());
    }
    let detail = if echo.len() != sent.len() {
        format!("{} bytes back, {} sent", echo.len(), sent.len())
    } else {
        let at = echo.iter().zip(sent).position(|(a, b)| a != b).unwrap_or(0);
        format!(
            "byte {at} of {}: {:#04x} instead of {:#04x}",
            sent.len(),
            echo[at],
            sent[at]
        )
    };
    Err(Error::Mismatch {
        conn,
        frame,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_payloads_differ_even_when_tiny() {
        for size in [1, 16, 1024] {
            let p = Payloads::new(size);
            for n in 0..DISTINCT as u64 {
                assert_eq!(p.get(n).len(), size);
                assert_ne!(p.get(n), p.get(n + 1), "size {size}, payload {n}");
            }
        }
    }

    #[test]
    fn check_names_the_first_wrong_byte() {
        assert!(check(0, 0, b"abc", b"abc").is_ok());
        let err = check(1, 2, b"abd", b"abc").unwrap_err().to_string();
        assert!(
            err.contains("connection 1, frame 2") && err.contains("byte 2 of 3"),
            "{err}"
        );
        let err = check(0, 0, b"ab", b"abc").unwrap_err().to_string();
        assert!(err.contains("2 bytes back, 3 sent"), "{err}");
    }
}
