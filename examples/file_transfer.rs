//! Sends a file to a receiver: verified with BLAKE3, resumable, with a
//! progress bar on both ends (hidden when stderr is not a terminal).
//!
//! ```sh
//! cargo run --example file_transfer -- recv --addr 127.0.0.1:8080 --out /tmp/in
//! cargo run --example file_transfer -- send --addr 127.0.0.1:8080 --file informe.pdf
//! ```
//!
//! `recv` serves until Ctrl-C or SIGTERM, or exits 0 after `--count N`
//! transfers; `send` exits 0 once the receiver confirmed the file (run it
//! again after a cut and it resumes). With `--course` on both, they speak
//! the course's improved protocol instead: a 4-byte big-endian size, the
//! raw body, and `Gracias.` back (`--max-size` bounds what `recv` accepts).
//! The course's Python sender and receiver are the other end as well.

mod support;

use std::path::PathBuf;

use clap::Parser;
use enchufe::transfer::{course, Event, Progress, Receiver, Upload};
use enchufe::{Client, Server};
use tokio::sync::watch;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
enum Cli {
    /// Receives files into a directory.
    Recv {
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Exit 0 after this many files.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        #[arg(long)]
        course: bool,
        /// `--course`: the largest size accepted, in bytes.
        #[arg(long, default_value_t = 1 << 30)]
        max_size: u64,
    },
    /// Sends one file.
    Send {
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        #[arg(long)]
        course: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    support::log::init();
    match Cli::parse() {
        Cli::Recv {
            addr,
            out,
            count,
            course: false,
            ..
        } => {
            let receiver = Receiver::new(&out, Default::default());
            let mut events = receiver.events();
            let server = Server::bind(&addr).await?.serve(receiver.clone());
            println!("listening on {}", server.local_addr());
            let received = async {
                for done in 0.. {
                    if count == Some(done) {
                        break;
                    }
                    loop {
                        match events.recv().await {
                            Ok(Event::Started { name, progress, .. }) => {
                                drop(support::progress::show(name, progress))
                            }
                            Ok(Event::Finished {
                                path, size, hash, ..
                            }) => {
                                println!(
                                    "received {} ({size} bytes, blake3 {hash})",
                                    path.display()
                                );
                                break;
                            }
                            Ok(Event::Failed { name, error, .. }) => eprintln!("{name}: {error}"),
                            _ => {}
                        }
                    }
                }
            };
            tokio::select! { () = received => {}, () = support::stop::signal() => {} }
            server.shutdown().await;
            receiver.shutdown().await;
        }
        Cli::Recv {
            addr,
            out,
            count,
            max_size,
            ..
        } => {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("listening on {}", listener.local_addr()?);
            let config = course::Config::default().max_size(max_size);
            let received = async {
                let mut done = 0;
                // One sender at a time, as the course's receiver.
                for n in 1.. {
                    if count == Some(done) {
                        break;
                    }
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let name = format!("recibido-{n}.bin");
                    let (tx, rx) = watch::channel(Progress::default());
                    let shown = support::progress::show(name.clone(), rx);
                    match course::receive(&mut stream, &out, &name, &config, Some(&tx)).await {
                        Ok((path, size)) => {
                            println!("received {} ({size} bytes)", path.display());
                            done += 1;
                        }
                        Err(e) => eprintln!("transfer {n}: {e}"),
                    }
                    drop(tx);
                    let _ = shown.await;
                }
            };
            tokio::select! { () = received => {}, () = support::stop::signal() => {} }
        }
        Cli::Send {
            addr,
            file,
            course: false,
        } => {
            let client = Client::connect(&addr).await?;
            let upload = Upload::file(&file).await?;
            support::progress::show(support::progress::name_of(&file), upload.progress());
            tokio::select! {
                r = upload.send(&client) => {
                    let r = r?;
                    println!("sent {} ({} bytes, blake3 {}, resumed from {})", r.name, r.size, r.hash, r.resumed_from);
                }
                () = support::stop::signal() => return Err("interrupted: send again to resume".into()),
            }
        }
        Cli::Send { addr, file, .. } => {
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            let source = tokio::fs::File::open(&file).await?;
            let size = source.metadata().await?.len();
            let (tx, rx) = watch::channel(Progress::default());
            support::progress::show(support::progress::name_of(&file), rx);
            let reply =
                course::send(&mut stream, source, size, &Default::default(), Some(&tx)).await?;
            println!("Respuesta: {}", String::from_utf8_lossy(&reply));
            if reply != course::THANKS {
                return Err("the receiver did not confirm".into());
            }
        }
    }
    Ok(())
}
