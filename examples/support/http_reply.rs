//! The `http_get` example's reply, how it is printed, and its line reader:
//! what holds the answer, apart from how it is read. Declared with `#[path]` by
//! examples/http_get.rs (so that tests/http.rs, which compiles that file,
//! gets it too), not by `support/mod.rs`.

use tokio::io::{AsyncBufRead, Lines};

use super::Error;

/// A reply: status code, its line, headers, body.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) status_line: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// Prints the head on stderr, as received, and the body on stdout.
    pub(crate) fn print(&self) {
        eprintln!("{}", self.status_line);
        for (name, value) in &self.headers {
            eprintln!("{name}: {value}");
        }
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &self.body);
    }
}

/// The next line of the head, without its CRLF; an error when the server
/// hangs up first, or sends more than the head may hold (`MAX_HEAD`).
pub(crate) async fn read_line(
    head: &mut Lines<impl AsyncBufRead + Unpin>,
) -> Result<String, Error> {
    match head.next_line().await {
        Ok(Some(line)) => Ok(line),
        Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => Err(e.into()),
        _ => Err("the server hung up without a whole HTTP reply head".into()),
    }
}
