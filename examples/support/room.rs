//! The chat room of the `chat` example, as a `Handler`: shared with
//! `tests/browser.rs`, which joins it from a browser.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use enchufe::server::{ConnectionId, Disconnect};
use enchufe::{Connection, Handler};

/// A connection's nickname, in its per-connection state (`None` until `/nick`).
#[derive(Default)]
pub(crate) struct Nick(Option<String>);

/// Who is in the room. One lock, so two clients cannot take one nickname.
#[derive(Default)]
pub(crate) struct Room(Mutex<HashMap<String, Connection>>);

impl Room {
    fn members(&self) -> MutexGuard<'_, HashMap<String, Connection>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `try_push` never waits: a client too slow to read misses lines
    /// instead of holding up the room (as `ServerHandle::broadcast` does).
    fn announce(&self, msg: &str, except: Option<ConnectionId>) {
        for conn in self.members().values().filter(|c| Some(c.id()) != except) {
            if let Err(e) = conn.try_push(msg) {
                tracing::debug!(conn = %conn.id(), error = %e, "line not delivered");
            }
        }
    }
}

impl Handler for Room {
    type Request = String;
    type Response = String;
    type Error = String; // goes back as an error frame: `client::Error::Remote`

    async fn handle(&self, line: String, conn: &Connection) -> Result<Option<String>, String> {
        let (cmd, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match (cmd, conn.with_state(|n: &mut Nick| n.0.clone())) {
            ("/nick", _) if rest.is_empty() || rest.contains(' ') => {
                Err("usage: /nick NAME".into())
            }
            ("/nick", _) => {
                let mut members = self.members();
                if members.contains_key(rest) {
                    return Err(format!("the nickname {rest} is taken"));
                }
                members.insert(rest.to_owned(), conn.clone());
                let notice = match conn.with_state(|n: &mut Nick| n.0.replace(rest.to_owned())) {
                    Some(old) => {
                        members.remove(&old);
                        format!("* {old} is now {rest}")
                    }
                    None => format!("* {rest} joined"),
                };
                drop(members);
                self.announce(&notice, None);
                Ok(Some("ok".into()))
            }
            (_, None) => Err("first choose a nickname: /nick NAME".into()),
            ("/who", _) => {
                let mut nicks: Vec<String> = self.members().keys().cloned().collect();
                nicks.sort_unstable();
                Ok(Some(format!("here: {}", nicks.join(", "))))
            }
            ("/msg", Some(me)) => {
                let (to, text) = rest.split_once(' ').ok_or("usage: /msg NICK TEXT")?;
                let target = self.members().get(to).cloned();
                let target = target.ok_or_else(|| format!("no one here is called {to}"))?;
                // One addressee, so this push may wait for room in its queue.
                let sent = target.push(format!("{me} (private): {text}")).await;
                sent.map(|()| Some(String::new()))
                    .map_err(|e| format!("not delivered to {to}: {e}"))
            }
            _ if cmd.starts_with('/') => Err(format!("unknown command {cmd}")),
            _ if line.trim().is_empty() => Ok(Some(String::new())),
            // A chat line is a request answered with an empty ack, not a notify:
            // one connection's requests run concurrently, and a client waiting
            // for each ack keeps its lines and commands in order.
            (_, Some(me)) => {
                self.announce(&format!("{me}: {line}"), Some(conn.id()));
                Ok(Some(String::new()))
            }
        }
    }

    async fn on_disconnect(&self, conn: &Connection, _reason: &Disconnect) {
        if let Some(nick) = conn.with_state(|n: &mut Nick| n.0.take()) {
            self.members().remove(&nick);
            self.announce(&format!("* {nick} left"), None);
        }
    }
}
