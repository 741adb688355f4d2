//! The hello exchange of the multiplexed profile, before the driver starts.

use enchufe_framing::mux::{self, Hello, Mismatch};
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::{Error, Result};

/// Sends our hello and reads the server's (PROTOCOL.md, section 1). What
/// a server of the plain profile does instead (answers with a message,
/// sends our hello back, closes) is a profile mismatch ([`Error::is_profile_mismatch`]).
pub(super) async fn exchange_hellos<Io: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<Io>,
    node_id: &str,
) -> Result<()> {
    let ours = Hello::new(node_id).encode().map_err(Error::Encode)?;
    // Each side sends its hello without waiting for the other's, so sending
    // before reading cannot deadlock.
    wire.write(&OutFrame::plain(ours.clone()))?;
    wire.flush().await?;
    let theirs = wire
        .recv()
        .await?
        .ok_or(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::ClosedOnHello,
        )))?;
    if theirs[..] == ours[..] {
        // A server answers with the acceptor flag set: this is ours.
        return Err(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::Echoed,
        )));
    }
    if !mux::is_hello(&theirs) {
        return Err(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::NotAHello,
        )));
    }
    let hello = Hello::decode(&theirs)?;
    debug!(server = %hello.node_id, "hello exchanged");
    Ok(())
}
