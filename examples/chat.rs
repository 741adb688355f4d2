//! The course's chat room, in the multiplexed profile: a line goes to everyone
//! else as a push `ana: hola`, `/msg bob text` to bob alone, `/who` lists the
//! room, `* ana joined` / `* ana left` go to everyone. Every line is a request,
//! so a mistake comes back as that line's error; pushes never pass for replies.
//!
//! ```text
//! cargo run --example chat -- server --addr 127.0.0.1:8080              # terminal 1
//! cargo run --example chat -- client --addr 127.0.0.1:8080 --nick bob   # terminal 2
//! printf '/who\nhola a todos\n/msg bob secreto\n' | cargo run --example chat -- client --nick ana
//! ```

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard, PoisonError};

use clap::Parser;
use enchufe::client::Error as ClientError;
use enchufe::server::{ConnectionId, Disconnect, Profile};
use enchufe::{Client, Connection, Handler, Server};
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

/// A chat room: run one server, then any number of clients.
#[derive(Parser)]
enum Args {
    /// Runs the chat server until Ctrl-C.
    Server {
        /// Address to listen on.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Joins the room; stdin lines are messages, `/who`, `/msg NICK TEXT`.
    Client {
        /// Server to connect to.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        /// Your nickname: one word, unique in the room.
        #[arg(long)]
        nick: String,
    },
}

/// A connection's nickname, in its per-connection state (`None` until `/nick`).
#[derive(Default)]
struct Nick(Option<String>);

/// Who is in the room. One lock, so two clients cannot take one nickname.
#[derive(Default)]
struct Room(Mutex<HashMap<String, Connection>>);

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (addr, nick) = match Args::parse() {
        Args::Client { addr, nick } => (addr, nick),
        Args::Server { addr } => {
            // No idle timeout: in a chat, listening for hours without typing is normal.
            let config = enchufe::server::Config::default()
                .profile(Profile::Multiplexed)
                .idle_timeout(None);
            let server = Server::bind(addr.as_str()).await?.with_config(config);
            let server = server.serve(Room::default());
            tracing::info!(addr = %server.local_addr(), "chat server ready; Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
            return Ok(());
        }
    };

    let config = enchufe::client::Config::default().profile(Profile::Multiplexed);
    let client = Client::connect_with(addr.as_str(), config).await?;
    // A taken nickname ends the program here, with the server's reason.
    let _ok: String = client.request(format!("/nick {nick}")).await?;
    tracing::info!(server = %addr, nick, "joined; /who, /msg NICK TEXT, Ctrl-D to leave");

    // Pushes only: every reply goes to the request waiting for it.
    let listener = client.clone();
    let mut printer = tokio::spawn(async move {
        while let Some(push) = listener.recv::<String>().await? {
            println!("{push}");
        }
        Ok::<_, ClientError>(()) // the server closed
    });

    // Stdin on a plain thread, as in `echo_client`: it cannot be cancelled.
    let (tx, mut lines) = mpsc::channel(16);
    std::thread::spawn(move || {
        std::io::stdin()
            .lines()
            .try_for_each(|l| tx.blocking_send(l))
    });
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => match client.request::<_, String>(line?).await {
                    Ok(reply) => if !reply.is_empty() { println!("{reply}") },
                    Err(ClientError::Remote { message, .. }) => println!("error: {message}"),
                    Err(e) => return Err(e.into()),
                },
                None => break, // end of input
            },
            ended = &mut printer => return Ok(ended??), // the server closed first
        }
    }
    // Half-close: every line has had its reply; the server closes, ending the printer.
    client.close().await?;
    printer.await??;
    Ok(())
}
