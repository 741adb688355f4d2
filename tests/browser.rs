//! A real browser joins the chat (features `ws`): headless Chromium loads
//! the `chat` example's page from `Server::ws`, joins over a WebSocket and
//! sends a line; an enchufe `Client` in the room receives it, answers, and
//! the answer shows in the page. A screenshot is saved (its path printed).
//!
//! Chromium is driven over its DevTools protocol (a WebSocket, spoken here
//! with tokio-tungstenite): the test waits for conditions, never for a
//! fixed time. `scripts/setup` installs Chromium; without it this test
//! fails, unless `ENCHUFE_SKIP_BROWSER=1` (then it says SKIPPED, loudly).
//! `ENCHUFE_CHROMIUM=PATH` picks another binary.

mod common;

#[path = "../examples/support/room.rs"]
#[allow(dead_code, unreachable_pub)]
mod room;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::bounded;
use enchufe::client::{self, Profile};
use enchufe::{Client, Server};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const PAGE: &str = include_str!("../examples/support/chat.html");

/// The Chromium binary, or `None` when the test is to be skipped.
fn chromium() -> Option<PathBuf> {
    if std::env::var_os("ENCHUFE_SKIP_BROWSER").is_some_and(|v| v == "1") {
        // Written to stderr directly: the test harness captures eprintln!.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"*** SKIPPED: browser test (ENCHUFE_SKIP_BROWSER=1): no browser joined the chat\n",
        );
        return None;
    }
    let name = std::env::var_os("ENCHUFE_CHROMIUM").unwrap_or_else(|| "chromium".into());
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(&name))
        .chain(std::iter::once(PathBuf::from(&name)))
        .find(|p| p.is_file());
    Some(found.unwrap_or_else(|| {
        panic!(
            "Chromium not found ({name:?}): run scripts/setup (as root: apt-get install chromium), \
             or set ENCHUFE_SKIP_BROWSER=1 to skip this test"
        )
    }))
}

/// Where the screenshot goes: the target directory when known, else temp.
fn screenshot_path() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    };
    dir.join("browser-chat.png")
}

#[tokio::test]
async fn a_browser_joins_the_chat() {
    let Some(chromium) = chromium() else { return };
    bounded(async {
        let config = enchufe::server::Config::default()
            .profile(Profile::Multiplexed)
            .idle_timeout(None);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .web(enchufe::ws::Options::default().page(PAGE))
            .serve(room::Room::default());
        // Terminal clients, the page and its WebSocket: one port.
        let web = server.local_addr();

        // A terminal client in the room.
        let config = client::Config::default().profile(Profile::Multiplexed);
        let bob = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let _: String = bob.request("/nick bob").await.unwrap();

        // The browser: it loads the page, joins as "web" and says "hola".
        let profile = tempdir("chromium-profile");
        let mut browser = tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=800,600",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("http://{web}/?nick=web&say=hola"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start Chromium");

        // What the browser sent reaches the terminal client as a push.
        let mut heard = Vec::new();
        while !heard.iter().any(|l: &String| l == "web: hola") {
            heard.push(bob.recv::<String>().await.unwrap().expect("server closed"));
        }
        assert!(heard.contains(&"* web joined".to_owned()), "{heard:?}");
        let _: String = bob.request("hola, navegador").await.unwrap();

        // And the page shows bob's answer.
        let mut page = DevTools::connect(&profile).await;
        let log = loop {
            let log = page
                .eval("document.getElementById('log').textContent")
                .await;
            if log.as_str().unwrap_or("").contains("bob: hola, navegador") {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(log.as_str().unwrap().contains("* you are web"), "{log}");
        let png = page.screenshot().await;
        let path = screenshot_path();
        std::fs::write(&path, png).unwrap();
        // Straight to stderr, past the harness's capture: always shown.
        let shown = format!("browser test screenshot: {}\n", path.display());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), shown.as_bytes());

        browser.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        server.shutdown().await;
    })
    .await;
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enchufe-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One page of the browser, over the DevTools protocol.
struct DevTools {
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    next_id: u64,
    /// The page's session, once attached; commands go to it.
    session: Option<String>,
}

impl DevTools {
    /// Finds where Chromium listens (it writes `DevToolsActivePort` in its
    /// profile: the port, then the browser's path) and attaches to the
    /// first page.
    async fn connect(profile: &Path) -> DevTools {
        let (port, path) = loop {
            let file =
                std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
            let mut lines = file.lines();
            if let (Some(Ok(port)), Some(path)) =
                (lines.next().map(str::parse::<u16>), lines.next())
            {
                break (port, path.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let mut devtools = DevTools {
            ws,
            next_id: 1,
            session: None,
        };
        let target = loop {
            let targets = devtools.call("Target.getTargets", json!({})).await;
            let page = targets["targetInfos"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page");
            if let Some(id) = page.and_then(|p| p["targetId"].as_str()) {
                break id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let attached = devtools
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        devtools.session = attached["sessionId"].as_str().map(str::to_owned);
        devtools
    }

    /// Sends a command and returns its result, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let msg = self.ws.next().await.expect("DevTools closed").unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

/// The same page on a room that spans two servers on one bus (feature
/// `redis`, for the room's cluster code; the bus is the in-process one):
/// the browser on one server, a terminal client on the other.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_browser_joins_the_chat_across_servers_on_a_bus() {
    use enchufe::bus::{self, Cluster, MemoryBus};
    use std::sync::Arc;

    let Some(chromium) = chromium() else { return };
    bounded(async {
        let bus = Arc::new(MemoryBus::new());
        let chat_server = |web: bool| {
            let bus = bus.clone();
            async move {
                let config = enchufe::server::Config::default()
                    .profile(Profile::Multiplexed)
                    .idle_timeout(None);
                let server = Server::bind("127.0.0.1:0")
                    .await
                    .unwrap()
                    .with_config(config);
                let server = match web {
                    true => server.web(enchufe::ws::Options::default().page(PAGE)),
                    false => server,
                };
                let room = room::Room::default();
                let slot = room.cluster.clone();
                let server = server.serve(room);
                let mut config = bus::Config::default();
                config.heartbeat = Duration::from_millis(50);
                config.presence_ttl = Duration::from_millis(300);
                let cluster = Cluster::attach(&server, bus, config).unwrap();
                slot.set(cluster.clone()).unwrap();
                (server, cluster)
            }
        };
        let (a, on_a) = chat_server(true).await;
        let (b, on_b) = chat_server(false).await;
        while on_a.nodes().len() < 2 || on_b.nodes().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A terminal client on b.
        let config = client::Config::default().profile(Profile::Multiplexed);
        let bob = Client::connect_with(b.local_addr(), config).await.unwrap();
        let _: String = bob.request("/nick bob").await.unwrap();

        // The browser on a: it joins as "web" and says "hola".
        let profile = tempdir("chromium-profile-bus");
        let mut browser = tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=800,600",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("http://{}/?nick=web&say=hola", a.local_addr()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start Chromium");

        // Across the bus: the browser's line reaches bob on the other server.
        let mut heard = Vec::new();
        while !heard.iter().any(|l: &String| l == "web: hola") {
            heard.push(bob.recv::<String>().await.unwrap().expect("server closed"));
        }
        assert!(heard.contains(&"* web joined".to_owned()), "{heard:?}");
        // Presence: bob's /who lists the browser on the other server.
        loop {
            let who: String = bob.request("/who").await.unwrap();
            if who == "here: bob, web" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: String = bob.request("hola, navegador").await.unwrap();

        // And back: the page on a shows bob's line from b.
        let mut page = DevTools::connect(&profile).await;
        loop {
            let log = page
                .eval("document.getElementById('log').textContent")
                .await;
            if log.as_str().unwrap_or("").contains("bob: hola, navegador") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        browser.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        on_a.detach().await;
        on_b.detach().await;
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
