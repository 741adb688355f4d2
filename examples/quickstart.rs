//! The README's quick start, exactly as it is printed there (a test checks
//! that the two match): a server that greets each client and answers its
//! commands, and a client that asks before it reads the greeting, in one
//! program that exits by itself. Both ends use their default profiles, so
//! the greeting can never be taken for the reply.
//!
//! ```text
//! cargo run --example quickstart
//! cargo run --example quickstart -- --addr 127.0.0.1:9000
//! ```

use enchufe::{Client, Connection, Handler, Server};
use std::convert::Infallible;

struct Commands;

impl Handler for Commands {
    type Request = String; // text frames; Json<T> or Bytes work too
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        let _ = conn.push("welcome").await; // unprompted message
    }

    async fn handle(&self, cmd: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(format!("done: {cmd}"))) // None = no reply
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1);
    let addr = addr.unwrap_or_else(|| "127.0.0.1:0".into()); // 0: any free port
    let server = Server::bind(addr.as_str()).await?.serve(Commands); // in the background

    let client = Client::connect(server.local_addr()).await?;
    let reply: String = client.request("jump").await?; // request/reply
    let greeting: Option<String> = client.recv().await?; // unsolicited
    println!("reply: {reply}");
    println!("greeting: {greeting:?}");

    client.close().await?; // half-close
    server.shutdown().await; // graceful
    Ok(())
}
