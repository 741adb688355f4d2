//! `MsgPack<T>` against Python's `msgpack` package, both ways.
//!
//! The course's pickle lesson sends a typed object (a `Persona`) through a
//! socket. `tests/interop/msgpack_peer.py` does it with `msgpack` dicts in
//! the course's framing; these tests check that a Rust struct sent as
//! `MsgPack<Persona>` arrives in Python as a dict with the field names as
//! keys and the right Python types (the script refuses anything else), and
//! that Python's dicts decode into the struct, floats exact:
//!
//! 1. an enchufe `Client` against the Python server: its greeting (pushed
//!    first), then requests answered by it; the server's own report of what
//!    it received;
//! 2. the Python client against an enchufe `Server` whose handler takes and
//!    returns `MsgPack<Persona>`.
//!
//! The script needs the `msgpack` package, which `scripts/test` installs
//! (docs/TESTING.md). Without it the script exits 5 and these tests fail
//! with its message: they never skip.
//!
//! ```text
//! cargo test --test interop_msgpack
//! ```

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::interop::{bounded, spawn_python, SCRIPT_TIMEOUT};
use enchufe::{handler_fn, Client, MsgPack, Server};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A persona as the script checks it: every field a different Python type.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct Persona {
    nombre: String,
    mail: String,
    edad: u8,
    altura: f64,
    tags: Vec<String>,
    jefe: Option<Box<Persona>>,
    puntos: BTreeMap<String, i64>,
}

/// The script's `answer`, in Rust.
fn answer(p: Persona) -> Persona {
    let mut tags = p.tags;
    tags.push("visto".into());
    Persona {
        nombre: p.nombre.to_uppercase(),
        edad: p.edad + 1,
        tags,
        ..p
    }
}

/// The script's `GREETING`.
fn greeting() -> Persona {
    Persona {
        nombre: "Servidor del curso".into(),
        mail: "servidor@curso.cl".into(),
        edad: 3,
        altura: 9.141592653589793,
        tags: vec!["ñandú".into(), "🦀".into()],
        jefe: None,
        puntos: [("uno".to_string(), 1), ("menos".to_string(), -(1 << 40))].into(),
    }
}

fn personas() -> Vec<Persona> {
    let ana = Persona {
        nombre: "Ana".into(),
        mail: "ana@algo.com".into(),
        edad: 51,
        altura: 0.1 + 0.2,
        tags: vec![],
        jefe: None,
        puntos: BTreeMap::new(),
    };
    vec![
        Persona {
            nombre: "Juan Pérez".into(),
            mail: "jp@algo.com".into(),
            edad: 42,
            altura: 1.779,
            tags: vec!["añoranza".into(), String::new()],
            jefe: Some(Box::new(ana.clone())),
            puntos: [("a".to_string(), i64::MIN), ("b".to_string(), i64::MAX)].into(),
        },
        ana,
        Persona {
            nombre: "x".repeat(70_000),
            mail: String::new(),
            edad: 0,
            altura: -0.0,
            tags: (0..1000).map(|i| i.to_string()).collect(),
            jefe: None,
            puntos: BTreeMap::new(),
        },
    ]
}

/// Waits for the script and returns its one JSON line, failing with its
/// stderr if it exited non-zero (exit 5: `msgpack` is not installed).
async fn report<T: for<'de> Deserialize<'de>>(
    child: tokio::process::Child,
    first_lines: Vec<String>,
) -> T {
    let output = child.wait_with_output().await.expect("msgpack_peer.py");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "msgpack_peer.py exited with {}; stderr:\n{stderr}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = first_lines
        .iter()
        .map(String::as_str)
        .chain(stdout.lines())
        .collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {lines:.200?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad report ({e}): {:.300}", lines[0]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerReport {
    received: Vec<Persona>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientReport {
    replies: Vec<Persona>,
}

#[tokio::test]
async fn enchufe_client_and_python_server_exchange_personas() {
    bounded("client_vs_python_server", async {
        let mut child = spawn_python("msgpack_peer.py", &["server", "--timeout", SCRIPT_TIMEOUT]);
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let line = stdout.next_line().await.expect("stdout");
        let Some(port) = line
            .as_deref()
            .and_then(|l| l.strip_prefix("PORT "))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let output = child.wait_with_output().await.expect("msgpack_peer.py");
            panic!(
                "msgpack_peer.py printed {line:?} instead of `PORT <n>` ({}); stderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        };

        // The Python peer speaks the plain profile: pinned.
        let plain = enchufe::client::Config::default().profile(enchufe::Profile::Plain);
        let client = Client::connect_with(format!("127.0.0.1:{port}"), plain)
            .await
            .unwrap();
        let MsgPack(hello): MsgPack<Persona> = client.recv().await.unwrap().expect("greeting");
        assert_eq!(hello, greeting());
        for p in personas() {
            let MsgPack(reply): MsgPack<Persona> = client.request(MsgPack(&p)).await.unwrap();
            assert_eq!(reply, answer(p));
        }
        client.close().await.unwrap();

        let mut rest = Vec::new();
        while let Some(line) = stdout.next_line().await.expect("stdout") {
            rest.push(line);
        }
        let report: ServerReport = report(child, rest).await;
        assert_eq!(report.received, personas());
    })
    .await;
}

#[tokio::test]
async fn python_client_and_enchufe_server_exchange_personas() {
    bounded("python_client_vs_server", async {
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            |MsgPack(p): MsgPack<Persona>, _conn| async move {
                Ok::<_, std::convert::Infallible>(Some(MsgPack(answer(p))))
            },
        ));
        let file = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("interop-msgpack-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_vec(&personas()).unwrap()).unwrap();

        let port = server.local_addr().port().to_string();
        let args = [
            "client",
            "--port",
            &port,
            "--objects",
            file.to_str().unwrap(),
        ];
        let child = spawn_python(
            "msgpack_peer.py",
            &[&args[..], &["--timeout", SCRIPT_TIMEOUT]].concat(),
        );
        let report: ClientReport = report(child, Vec::new()).await;
        let _ = std::fs::remove_file(&file);

        let expected: Vec<Persona> = personas().into_iter().map(answer).collect();
        assert_eq!(report.replies, expected);
        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .expect("shutdown");
    })
    .await;
}
