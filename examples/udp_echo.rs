//! UDP echo: a server that sends every datagram back, and a client that
//! sends each line of stdin as one datagram and prints the reply. No
//! connection and no framing: one datagram is one message, as in the
//! course's `sendto` / `recvfrom` examples. The client's `request` waits 1 s
//! for a reply and sends again, up to 3 times, since UDP loses datagrams.
//! Both stop on Ctrl-C or SIGTERM; the client also at the end of its input.
//!
//! ```text
//! cargo run --example udp_echo -- server --addr 127.0.0.1:8080
//! cargo run --example udp_echo -- server --recv-buffer 4194304   # bursts
//! cargo run --example udp_echo -- server --batch 1   # one datagram a system call
//! cargo run --example udp_echo -- client --addr 127.0.0.1:8080
//! printf 'hola\nñandú\n' | cargo run --example udp_echo -- client --addr 127.0.0.1:8080
//! ```
//!
//! The course's Python client talks to the server too:
//! `python3 tests/interop/udp_client.py --port 8080 --messages '["hola"]'`.

use std::convert::Infallible;
use std::io::IsTerminal;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use enchufe::udp::{handler_fn, server};
use enchufe::{UdpClient, UdpServer};
use tokio::io::{AsyncBufReadExt, BufReader};

mod support;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Send every datagram back to its sender, unchanged.
    Server {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        /// Receive buffer (SO_RCVBUF) in bytes: what a burst can queue
        /// while the server is busy; past it the kernel drops datagrams.
        #[arg(long, value_name = "BYTES")]
        recv_buffer: Option<usize>,
        /// Most datagrams taken in one system call, and replies sent in
        /// one (`recvmmsg`/`sendmmsg` on Linux); 1 reads one at a time.
        #[arg(long, value_name = "N", default_value_t = server::Config::default().batch)]
        batch: usize,
    },
    /// Send stdin lines to the server, print its replies.
    Client {
        /// The server's address.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Args::parse().role {
        Role::Server {
            addr,
            recv_buffer,
            batch,
        } => {
            let mut config = server::Config::default().batch(batch);
            config.recv_buffer = recv_buffer;
            let server = UdpServer::bind(addr.as_str()).await?.with_config(config)?;
            println!("listening on {}", server.local_addr()?);
            // Bytes in, Bytes out: the datagram goes back as it arrived.
            let echo =
                handler_fn(
                    |datagram: Bytes, _ctx| async move { Ok::<_, Infallible>(Some(datagram)) },
                );
            server.run(echo, support::stop::signal()).await;
        }
        Role::Client { addr } => {
            let client = UdpClient::connect(addr.as_str()).await?;
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            let talk = async {
                while let Some(line) = lines.next_line().await? {
                    match client.request::<_, String>(line).await {
                        Ok(reply) => println!("{reply}"),
                        // A lost reply or a server that is not there is
                        // reported, and the next line is tried.
                        Err(e) => eprintln!("error: {e}"),
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            tokio::select! {
                done = talk => done?,
                () = support::stop::signal() => {}
            }
        }
    }
    Ok(())
}
