//! The `Date` header every response carries (RFC 9110 §6.6.1): a
//! connection holds its line ([`Date`]) and refreshes it once per batch of
//! replies, not per reply; the text is formatted once per second per
//! thread and copied.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: IMF-fixdate is always this long.
const LEN: usize = 29;

/// `Date: ` + the date + CRLF.
const LINE: usize = 6 + LEN + 2;

thread_local! {
    /// The second last formatted and its text: a worker thread formats a
    /// date once per second however many connections it serves.
    static CACHE: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// A connection's `Date` line, as of its last [`Date::refresh`].
#[derive(Debug, Clone)]
pub(crate) struct Date {
    /// The second it says.
    second: u64,
    /// `Date: <IMF-fixdate>\r\n`.
    line: [u8; LINE],
}

impl Default for Date {
    fn default() -> Self {
        let mut line = [b' '; LINE];
        line[..6].copy_from_slice(b"Date: ");
        line[LINE - 2..].copy_from_slice(b"\r\n");
        Date {
            second: u64::MAX,
            line,
        }
    }
}

impl Date {
    /// Reads the clock and, when the second changed, takes the thread's
    /// text for it (formatting it if no connection of this thread has).
    pub(crate) fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second == self.second {
            return;
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.0 != second {
                let text = httpdate::fmt_http_date(now);
                if text.len() == LEN {
                    cache.1.copy_from_slice(text.as_bytes());
                    cache.0 = second;
                }
            }
            self.line[6..6 + LEN].copy_from_slice(&cache.1);
            self.second = second;
        });
    }

    /// The line, `Date: ...\r\n`.
    pub(crate) fn line(&self) -> &[u8] {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut date = Date::default();
        date.refresh();
        let text = std::str::from_utf8(date.line()).unwrap();
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
