//! The chat room of the `chat` example, as a `Handler`: shared with
//! `tests/browser.rs`, which joins it from a browser. With a bus (feature
//! `redis`, `chat server --bus redis://HOST:PORT`), the room spans every
//! server on that bus: lines, notices and `/msg` go through the cluster,
//! and `/who` and nickname checks read its presence (each member is also
//! alone in a room named `nick:NAME`). A member's line waits for the bus:
//! if it reached this server's members but not the others (the bus is
//! down or slow), the sender gets an error saying so.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use enchufe::server::{ConnectionId, Disconnect};
use enchufe::{Connection, Handler};

/// A connection's nickname, in its per-connection state (`None` until `/nick`).
#[derive(Default)]
pub(crate) struct Nick(Option<String>);

/// Who is in the room. One lock, so two clients cannot take one nickname.
#[derive(Default)]
pub(crate) struct Room {
    members: Mutex<HashMap<String, Connection>>,
    /// Set once the server runs (attaching needs its handle).
    #[cfg(feature = "redis")]
    pub(crate) cluster: std::sync::Arc<std::sync::OnceLock<enchufe::bus::Cluster>>,
}

impl Room {
    fn members(&self) -> MutexGuard<'_, HashMap<String, Connection>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `try_push` never waits: a client too slow to read misses lines
    /// instead of holding up the room (as `ServerHandle::broadcast` does).
    fn announce(&self, msg: &str, except: Option<ConnectionId>) {
        #[cfg(feature = "redis")]
        if let Some(cluster) = self.cluster.get() {
            // Local members at once, the other servers' through the bus.
            let sent = match except {
                Some(except) => cluster.to_room_except("chat", except, msg),
                None => cluster.to_room("chat", msg),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "line not sent");
            }
            return;
        }
        for conn in self.members().values().filter(|c| Some(c.id()) != except) {
            if let Err(e) = conn.try_push(msg) {
                tracing::debug!(conn = %conn.id(), error = %e, "line not delivered");
            }
        }
    }

    /// A member's line: to everyone else at once here, and through the
    /// bus; `Err` says why the other servers did not get it.
    async fn say(&self, line: &str, from: ConnectionId) -> Result<(), String> {
        #[cfg(feature = "redis")]
        if let Some(cluster) = self.cluster.get() {
            return match cluster.to_room_confirmed("chat", Some(from), line).await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("sent here, not to the other servers: {e}")),
            };
        }
        self.announce(line, Some(from));
        Ok(())
    }

    /// Nicknames on the other servers of the cluster, if any.
    fn remote_nicks(&self) -> Vec<String> {
        #[cfg(feature = "redis")]
        if let Some(cluster) = self.cluster.get() {
            let rooms = cluster.rooms().into_iter();
            return rooms
                .filter_map(|r| r.strip_prefix("nick:").map(str::to_owned))
                .collect();
        }
        Vec::new()
    }

    /// Puts `conn` in the cluster's rooms as `nick` (leaving `old`'s).
    fn enter(&self, _conn: ConnectionId, _nick: Option<&str>, _old: Option<&str>) {
        #[cfg(feature = "redis")]
        if let Some(cluster) = self.cluster.get() {
            if let Some(old) = _old {
                cluster.leave(&format!("nick:{old}"), _conn);
            }
            match _nick {
                Some(nick) => {
                    let _ = cluster.join("chat", _conn);
                    let _ = cluster.join(&format!("nick:{nick}"), _conn);
                }
                None => _ = cluster.leave("chat", _conn),
            }
        }
    }

    /// A private line to `to` on another server; `false` if nobody there
    /// has that nickname.
    fn tell_remote(&self, _to: &str, _line: &str) -> bool {
        #[cfg(feature = "redis")]
        if let Some(cluster) = self.cluster.get() {
            if self.remote_nicks().iter().any(|n| n == _to) {
                return cluster.to_room(&format!("nick:{_to}"), _line).is_ok();
            }
        }
        false
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
                // Across servers the check is as fresh as the last heartbeat.
                let remote = self.remote_nicks();
                let mut members = self.members();
                if members.contains_key(rest) || remote.iter().any(|n| n == rest) {
                    return Err(format!("the nickname {rest} is taken"));
                }
                members.insert(rest.to_owned(), conn.clone());
                let old = conn.with_state(|n: &mut Nick| n.0.replace(rest.to_owned()));
                let notice = match &old {
                    Some(old) => {
                        members.remove(old);
                        format!("* {old} is now {rest}")
                    }
                    None => format!("* {rest} joined"),
                };
                drop(members);
                self.enter(conn.id(), Some(rest), old.as_deref());
                self.announce(&notice, None);
                Ok(Some("ok".into()))
            }
            (_, None) => Err("first choose a nickname: /nick NAME".into()),
            ("/who", _) => {
                let mut nicks: Vec<String> = self.members().keys().cloned().collect();
                nicks.extend(self.remote_nicks());
                nicks.sort_unstable();
                nicks.dedup();
                Ok(Some(format!("here: {}", nicks.join(", "))))
            }
            ("/msg", Some(me)) => {
                let (to, text) = rest.split_once(' ').ok_or("usage: /msg NICK TEXT")?;
                let line = format!("{me} (private): {text}");
                let Some(target) = self.members().get(to).cloned() else {
                    return match self.tell_remote(to, &line) {
                        true => Ok(Some(String::new())),
                        false => Err(format!("no one here is called {to}")),
                    };
                };
                // One addressee, so this push may wait for room in its queue.
                let sent = target.push(line).await;
                sent.map(|()| Some(String::new()))
                    .map_err(|e| format!("not delivered to {to}: {e}"))
            }
            _ if cmd.starts_with('/') => Err(format!("unknown command {cmd}")),
            _ if line.trim().is_empty() => Ok(Some(String::new())),
            // A chat line is a request answered with an empty ack, not a notify:
            // one connection's requests run concurrently, and a client waiting
            // for each ack keeps its lines and commands in order.
            (_, Some(me)) => {
                self.say(&format!("{me}: {line}"), conn.id()).await?;
                Ok(Some(String::new()))
            }
        }
    }

    async fn on_disconnect(&self, conn: &Connection, _reason: &Disconnect) {
        if let Some(nick) = conn.with_state(|n: &mut Nick| n.0.take()) {
            self.members().remove(&nick);
            self.enter(conn.id(), None, Some(&nick));
            self.announce(&format!("* {nick} left"), None);
        }
    }
}
