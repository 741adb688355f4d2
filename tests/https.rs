//! HTTPS (feature `tls`): the `http_hello` example run with `--tls-cert`
//! and `--tls-key` (a certificate made here), answered through the
//! server's TLS and its HTTP door; asked by curl (`--cacert`) and by a
//! rustls client (`enchufe::tls::Connector`).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::bounded;
use common::examples::built_examples;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A CA and a certificate from it for `localhost` and 127.0.0.1, as PEM
/// files in `dir`: `ca.pem`, `cert.pem`, `key.pem`.
fn write_certs(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "enchufe https test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// `http_hello` serving HTTPS on 127.0.0.1:0 with the certificate in `dir`,
/// and its port (from the `listening on` line).
async fn start(example: &Path, dir: &Path) -> (Child, u16) {
    let mut child = Command::new(example)
        .args(["--addr", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("listening line");
    let addr = line.strip_prefix("listening on ").expect("listening line");
    let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    (child, port)
}

/// Stops the example as Ctrl-C would (SIGTERM): it must exit cleanly.
async fn stop(mut child: Child) {
    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(killed.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("http_hello did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Whether `curl` runs here; a test without it says so loudly.
async fn has_curl() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED: curl is not installed (scripts/setup installs it)");
    }
    found
}

/// The repository's root, where the examples are built.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn curl_gets_and_posts_over_https() {
    if !has_curl().await {
        return;
    }
    let example = tokio::task::spawn_blocking(|| built_examples(root()).join("http_hello"))
        .await
        .unwrap();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path());
        let (child, port) = start(&example, dir.path()).await;
        let ca = dir.path().join("ca.pem");
        let curl = |args: &[&str]| {
            let mut cmd = Command::new("curl");
            cmd.args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
                .arg(&ca)
                .args(args)
                .current_dir(dir.path())
                .kill_on_drop(true);
            cmd
        };

        let url = format!("https://localhost:{port}/hola/x");
        let got = curl(&[&url]).output().await.unwrap();
        let err = String::from_utf8_lossy(&got.stderr);
        assert!(got.status.success(), "curl: {err}");
        assert_eq!(String::from_utf8_lossy(&got.stdout), "hola, x\n");

        // A body over TLS, byte for byte.
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("body.bin"), &body).unwrap();
        let eco = format!("https://localhost:{port}/eco");
        let got = curl(&["--data-binary", "@body.bin", &eco])
            .output()
            .await
            .unwrap();
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(
            got.stdout == body,
            "/eco over TLS sent {} bytes back",
            got.stdout.len()
        );

        // Plain HTTP to the HTTPS port is not served as plain HTTP.
        let plain = format!("http://127.0.0.1:{port}/hola/x");
        let got = curl(&[&plain]).output().await.unwrap();
        assert!(!got.stdout.starts_with(b"hola"), "{:?}", got.stdout);

        stop(child).await;
    })
    .await;
}

#[tokio::test]
async fn a_rustls_client_keeps_its_connection_alive() {
    let example = tokio::task::spawn_blocking(|| built_examples(root()).join("http_hello"))
        .await
        .unwrap();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path());
        let (child, port) = start(&example, dir.path()).await;
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let connector = enchufe::tls::Connector::from_ca_pem(&ca).unwrap();
        let addr = format!("localhost:{port}");
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = connector
            .connect(&addr, tcp, Duration::from_secs(10))
            .await
            .unwrap();

        // Two requests on one connection, the second closing it.
        tls.write_all(b"GET /hola/uno HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        tls.write_all(b"GET /hola/dos HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        tls.read_to_end(&mut all).await.unwrap();
        let all = String::from_utf8_lossy(&all);
        assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{all}");
        let uno = all.find("hola, uno\n").expect("first reply");
        let dos = all.find("hola, dos\n").expect("second reply");
        assert!(uno < dos, "{all}");

        // A client that does not trust the CA is refused in the handshake.
        let stranger = tempfile::tempdir().unwrap();
        write_certs(stranger.path());
        let other = std::fs::read(stranger.path().join("ca.pem")).unwrap();
        let untrusting = enchufe::tls::Connector::from_ca_pem(&other).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let err = untrusting
            .connect(&addr, tcp, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.is_certificate(), "{err:?}");

        stop(child).await;
    })
    .await;
}
