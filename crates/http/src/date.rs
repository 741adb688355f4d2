//! The `Date` header every response carries (RFC 9110 §6.6.1), formatted
//! once per second per thread and copied into each reply.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: IMF-fixdate is always this long.
const LEN: usize = 29;

thread_local! {
    /// The second last formatted and its text: a worker thread formats a
    /// date once per second however many replies it writes (reading the
    /// clock is a vDSO call; formatting is what is saved).
    static CACHE: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// Appends `Date: <now>\r\n` to `out`.
pub(crate) fn put(out: &mut bytes::BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = second;
            }
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&cache.1);
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut out = bytes::BytesMut::new();
        super::put(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let date = text
            .strip_prefix("Date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let when = httpdate::parse_http_date(date).unwrap();
        let age = std::time::SystemTime::now().duration_since(when).unwrap();
        assert!(age.as_secs() < 60, "{text}");
    }
}
