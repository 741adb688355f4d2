//! The course's chat room, in the multiplexed profile: a line goes to everyone
//! else as a push `ana: hola`, `/msg bob text` to bob alone, `/who` lists the
//! room, `* ana joined` / `* ana left` go to everyone. Every line is a request,
//! so a mistake comes back as that line's error; pushes never pass for replies.
//! With `--web` (feature `ws`), browsers join the same room on the same
//! port: `GET /` is the page (`support/chat.html`), its WebSocket the same
//! room's door.
//!
//! ```text
//! cargo run --example chat -- server --addr 127.0.0.1:8080              # terminal 1
//! cargo run --example chat -- client --addr 127.0.0.1:8080 --nick bob   # terminal 2
//! printf '/who\nhola a todos\n/msg bob secreto\n' | cargo run --example chat -- client --nick ana
//! cargo run --features ws --example chat -- server --web   # or, for browsers too
//! # open http://127.0.0.1:8080/ (or http://127.0.0.1:8080/?nick=ana&say=hola)
//! ```
//!
//! With `--bus` (feature `redis`), servers on one Redis form one room: a
//! line, `/msg` and `/who` reach members on every server; a line that
//! reached only this server's members (Redis down) comes back as an error,
//! and a server cut off for a while catches up from the room's history.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no                   # terminal 1
//! cargo run --features redis --example chat -- server --addr 127.0.0.1:8081 --bus redis://127.0.0.1:6379
//! cargo run --features redis --example chat -- server --addr 127.0.0.1:8082 --bus redis://127.0.0.1:6379
//! cargo run --example chat -- client --addr 127.0.0.1:8081 --nick ana
//! cargo run --example chat -- client --addr 127.0.0.1:8082 --nick bob
//! ```

use clap::Parser;
use enchufe::client::Error as ClientError;
use enchufe::server::Profile;
use enchufe::{Client, Server};

mod support;

/// A chat room: run one server, then any number of clients.
#[derive(Parser)]
enum Args {
    /// Runs the chat server until Ctrl-C or SIGTERM.
    Server {
        /// Address to listen on.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        /// Also serve the chat page and its WebSocket on this port, for browsers.
        #[arg(long)]
        web: bool,
        /// Join the servers on this Redis into one room (feature `redis`).
        #[arg(long, value_name = "redis://HOST:PORT")]
        bus: Option<String>,
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

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let (addr, nick) = match Args::parse() {
        Args::Client { addr, nick } => (addr, nick),
        Args::Server { addr, web, bus } => {
            // No idle timeout: in a chat, listening for hours without typing is normal.
            let config = enchufe::server::Config::default()
                .profile(Profile::Multiplexed)
                .idle_timeout(None);
            let server = Server::bind(addr.as_str()).await?.with_config(config);
            let server = support::web::listen(server, web)?;
            let room = support::room::Room::default();
            let cluster = support::bus::slot(&room);
            let server = server.serve(room);
            support::bus::attach(&server, cluster.clone(), bus.as_deref())?;
            if web {
                tracing::info!("browsers: open http://{}/", server.local_addr());
            }
            tracing::info!(addr = %server.local_addr(), "chat server ready; Ctrl-C to stop");
            support::stop::signal().await;
            support::bus::detach(&cluster).await;
            server.shutdown().await;
            return Ok(());
        }
    };

    // Multiplexed (the default). A taken nickname ends the program at
    // `/nick`, with the server's reason.
    let client = Client::connect(addr.as_str()).await?;
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

    let mut lines = support::stdin::lines();
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(line) => match client.request::<_, String>(line).await {
                    Ok(reply) => if !reply.is_empty() { println!("{reply}") },
                    Err(ClientError::Remote { message, .. }) => println!("error: {message}"),
                    Err(e) => return Err(e.into()),
                },
                None => break, // end of input, Ctrl-C or SIGTERM
            },
            ended = &mut printer => return Ok(ended??), // the server closed first
        }
    }
    // Half-close: every line has had its reply; the server closes, ending the printer.
    client.close().await?;
    printer.await??;
    Ok(())
}
