//! Every command of the course guide (docs/COURSE.md and docs/COURSE.en.md)
//! runs as written, from the repository's root, on loopback.
//!
//! The rule: a command is a line of a fenced `sh` block (a line ending in
//! `\` goes on on the next one). Each lesson (`## ` heading) runs on its
//! own, its commands in order:
//!
//! - `cargo run [--features F] --example NAME -- ARGS` runs the example's
//!   binary, built once before anything is timed (`cargo build --examples`
//!   with every feature; a `--features` the line lacks but the example
//!   requires fails the test, as it would fail cargo). Other commands
//!   (`printf ... |`, `curl`) run as written, with `sh`.
//! - The commands that serve until stopped ([`SERVERS`]) start in the
//!   background with an open stdin (a terminal nobody types in), and are
//!   ready once they print `listening on` (the examples' line) or
//!   `accepting connections` (the server's log line). At the lesson's end
//!   each must exit successfully on SIGTERM (or have done so by itself, as
//!   `greeter --clients N` does).
//! - Every other command gets an empty stdin (what it needs, the guide
//!   pipes to it with `printf`) and must exit successfully in time.
//! - Paths under `/tmp/` go to a fresh temporary directory instead, so that
//!   each run starts as a fresh machine does (`--out /tmp/in` missing).
//!
//! Both guides list the same commands (their comments aside).
//!
//! ```text
//! cargo test -p enchufe-examples --all-features --test course
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

#[path = "../../tests/common/examples.rs"]
mod examples;
use examples::built_examples;

/// The commands that serve until stopped: the example, and its mode when it
/// has one (the first argument after `--`).
const SERVERS: &[(&str, Option<&str>)] = &[
    ("echo_server", None),
    ("greeter", None),
    ("http_hello", None),
    ("p2p", None),
    ("udp_echo", Some("server")),
    ("chat", Some("server")),
    ("multi_server", Some("serve")),
    ("file_transfer", Some("recv")),
];

/// Generous bounds that only prove "not hung": a client's whole run, a
/// server's start, a server's exit after SIGTERM.
const CLIENT_LIMIT: Duration = Duration::from_secs(20);
const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// One command of the guide, as written, with the lesson it belongs to.
#[derive(Debug, Clone)]
struct Line {
    lesson: String,
    text: String,
}

/// The commands of a guide: every line of its ```sh blocks.
fn commands(guide: &str) -> Vec<Line> {
    let (mut lines, mut lesson, mut in_sh) = (Vec::new(), String::new(), false);
    let mut pending = String::new();
    for line in guide.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            lesson = title.to_owned();
        } else if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
        } else if in_sh && !line.trim().is_empty() {
            pending.push_str(line.trim());
            match pending.strip_suffix('\\') {
                Some(more) => pending = format!("{} ", more.trim_end()),
                None => lines.push(Line {
                    lesson: lesson.clone(),
                    text: std::mem::take(&mut pending),
                }),
            }
        }
    }
    lines
}

/// A line without its shell comment, for comparing the two guides.
fn without_comment(text: &str) -> &str {
    text.find(" #").map_or(text, |at| &text[..at]).trim_end()
}

/// What a `cargo run` line runs.
#[derive(Debug)]
struct Run {
    /// The line with `cargo run ... --example NAME --` replaced by the binary.
    shell: String,
    example: String,
    features: Vec<String>,
    args: Vec<String>,
}

/// Parses the `cargo run` in `text`, if any.
fn cargo_run(text: &str, examples: &Path) -> Option<Run> {
    let start = text.find("cargo run")?;
    let mut at = start + "cargo run".len();
    let (mut example, mut features) = (None, Vec::new());
    // The comment is not cargo's; the arguments end where it begins.
    let words = without_comment(text);
    while let Some(word) = next_word(words, &mut at) {
        match word {
            "--example" => example = next_word(words, &mut at).map(str::to_owned),
            "--features" => {
                let list = next_word(words, &mut at).expect("--features LIST");
                features.extend(list.split(',').map(str::to_owned));
            }
            "--" => break,
            // Cargo would take arguments before `--` as its own.
            _ if example.is_some() => panic!("{text:?}: arguments need `--` first"),
            _ => {}
        }
    }
    let example = example.unwrap_or_else(|| panic!("{text:?}: cargo run without --example"));
    let tail = &text[at..];
    let args = without_comment(tail).split_whitespace().map(str::to_owned);
    let bin = examples.join(&example);
    Some(Run {
        shell: format!("{}'{}'{tail}", &text[..start], bin.display()),
        example,
        features,
        args: args.collect(),
    })
}

/// The word of `text` from `at` on, moving `at` past it.
fn next_word<'t>(text: &'t str, at: &mut usize) -> Option<&'t str> {
    let rest = &text[*at..];
    let begin = *at + rest.len() - rest.trim_start().len();
    let len = text[begin..]
        .find(char::is_whitespace)
        .unwrap_or(text.len() - begin);
    *at = begin + len;
    (len > 0).then(|| &text[begin..*at])
}

/// Each example's `required-features` in examples/Cargo.toml.
fn required_features(manifest: &str, example: &str) -> Vec<String> {
    let block = manifest
        .split("[[example]]")
        .find(|b| b.contains(&format!("name = \"{example}\"")))
        .unwrap_or_else(|| panic!("no example {example:?} in examples/Cargo.toml"));
    let Some(list) = block.split("required-features = [").nth(1) else {
        return Vec::new();
    };
    let list = &list[..list.find(']').unwrap()];
    list.split(',')
        .map(|f| f.trim().trim_matches('"').to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// A command running, with what it has printed so far.
struct Running {
    line: Line,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(line: &Line, shell: &str, root: &Path, stdin: Stdio) -> Running {
        let mut child = Command::new("sh")
            .args(["-c", shell])
            .current_dir(root)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a pipeline that hangs is
            // killed whole.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh for {:?}: {e}", line.text));
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Running {
            line: line.clone(),
            child,
            output,
        }
    }

    /// What it printed, for a failure's message.
    fn printed(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: `{}` {why}; it printed:\n{}",
            self.line.lesson,
            self.line.text,
            self.printed()
        )
    }

    /// Sends `signal` to its whole process group.
    fn kill(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([signal, "--", &format!("-{pid}")])
                .status();
        }
    }
}

fn collect(mut from: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

/// Waits until `server` is ready: it printed `listening on` (the examples'
/// line) or `accepting connections` (the server's log line).
async fn ready(server: &mut Running) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            sleep(Duration::from_millis(100)).await; // the rest of its output
            server.fail(&format!("ended before serving ({status})"));
        }
        let printed = server.printed();
        if printed.contains("listening on") || printed.contains("accepting connections") {
            return;
        }
        if Instant::now() > deadline {
            server.fail(&format!("is not serving after {START_LIMIT:?}"));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `lines` (one lesson) as the module's doc says.
async fn run_lesson(lines: &[Line], root: &Path, examples: &Path, tmp: &Path, manifest: &str) {
    let mut servers: Vec<Running> = Vec::new();
    // Holding their stdins open: a terminal nobody types in.
    let mut stdins = Vec::new();
    for line in lines {
        let text = line.text.replace("/tmp/", &format!("{}/", tmp.display()));
        let run = cargo_run(&text, examples);
        if let Some(run) = &run {
            for feature in required_features(manifest, &run.example) {
                assert!(
                    run.features.contains(&feature),
                    "{}: `{}` needs --features {feature}",
                    line.lesson,
                    line.text
                );
            }
        }
        let serves = run.as_ref().is_some_and(|run| {
            let mode = run.args.iter().find(|a| !a.starts_with('-'));
            SERVERS.iter().any(|(name, m)| {
                *name == run.example && (m.is_none() || m.as_deref() == mode.map(String::as_str))
            })
        });
        if serves {
            let run = run.unwrap();
            let mut server =
                Running::spawn(line, &format!("exec {}", run.shell), root, Stdio::piped());
            stdins.push(server.child.stdin.take());
            ready(&mut server).await;
            servers.push(server);
        } else {
            let shell = run.map_or(text, |run| run.shell);
            let mut client = Running::spawn(line, &shell, root, Stdio::null());
            match timeout(CLIENT_LIMIT, client.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(status) => {
                    sleep(Duration::from_millis(100)).await;
                    client.fail(&format!("failed ({status:?})"));
                }
                Err(_) => {
                    client.kill("-KILL");
                    client.fail(&format!("did not end within {CLIENT_LIMIT:?}"));
                }
            }
        }
    }
    for server in &mut servers {
        match server.child.try_wait() {
            // One that stops by itself (`greeter --clients N`) must succeed.
            Ok(Some(status)) if !status.success() => server.fail(&format!("failed ({status})")),
            _ => server.kill("-TERM"),
        }
    }
    drop(stdins);
    for server in &mut servers {
        match timeout(STOP_LIMIT, server.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(status) => server.fail(&format!("ended badly on SIGTERM ({status:?})")),
            Err(_) => {
                server.kill("-KILL");
                server.fail(&format!("did not stop within {STOP_LIMIT:?} of SIGTERM"));
            }
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn guide(name: &str) -> Vec<Line> {
    let path = root().join("docs").join(name);
    commands(&std::fs::read_to_string(&path).unwrap())
}

#[test]
fn both_guides_list_the_same_commands() {
    let es: Vec<_> = guide("COURSE.md").into_iter().map(|l| l.text).collect();
    let en: Vec<_> = guide("COURSE.en.md").into_iter().map(|l| l.text).collect();
    let strip = |v: &[String]| {
        v.iter()
            .map(|t| without_comment(t).to_owned())
            .collect::<Vec<_>>()
    };
    assert!(es.len() >= 20, "{es:#?}");
    assert_eq!(strip(&es), strip(&en));
}

#[test]
fn a_line_becomes_its_examples_binary() {
    let run = cargo_run(
        "printf 'a\\n' | cargo run --features tls --example chat -- client --addr 127.0.0.1:1   # terminal 2",
        Path::new("/bin"),
    )
    .unwrap();
    assert_eq!(
        run.shell,
        "printf 'a\\n' | '/bin/chat' client --addr 127.0.0.1:1   # terminal 2"
    );
    assert_eq!(
        (run.example.as_str(), run.features),
        ("chat", vec!["tls".to_owned()])
    );
    assert_eq!(run.args, ["client", "--addr", "127.0.0.1:1"]);
}

/// Set (to the examples' directory) in the copy of this test that runs
/// inside its own network namespace.
const IN_NETNS: &str = "ENCHUFE_COURSE_NETNS";

/// The whole run, lessons included, ends within this (it takes seconds).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The guides name fixed ports (8080, 8081, 7001...), so their commands run
/// in a network namespace of this test's own, where nothing else listens and
/// nothing they open is seen outside: this test builds the examples, then
/// runs itself again under `unshare --net` (as root; otherwise with
/// `--map-root-user`, a user namespace) with loopback up. Where neither is
/// allowed it fails, unless `ENCHUFE_SKIP_NETNS=1` says to skip it (loudly),
/// as the namespace tests of scripts/test do.
#[test]
fn every_course_command_runs_as_written() {
    if let Some(examples) = std::env::var_os(IN_NETNS) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_guides(&root(), Path::new(&examples)));
        return;
    }
    // Built first, outside every time limit: a cold build takes minutes.
    let started = std::time::Instant::now();
    let examples = built_examples(&root());
    eprintln!("cargo build --examples: {:?}", started.elapsed());
    let exe = std::env::current_exe().unwrap();
    let this = [
        "--exact",
        "every_course_command_runs_as_written",
        "--nocapture",
    ];
    let mut last = String::new();
    for user_ns in [false, true] {
        let mut unshare = std::process::Command::new("unshare");
        if user_ns {
            unshare.arg("--map-root-user");
        }
        unshare
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                r#"ip link set lo up && exec "$0" "$@""#,
            ])
            .arg(&exe)
            .args(this)
            .env(IN_NETNS, &examples);
        let mut child = match unshare.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot run unshare (util-linux): {e}"),
        };
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the course commands took over {RUN_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // 101: the test failed inside (its output is above); anything else:
        // the namespace could not be made.
        match status.code() {
            Some(0) => return,
            Some(101) => panic!("a course command failed (see above)"),
            _ => {
                last = format!(
                    "unshare{} --net: {status}",
                    if user_ns { " --map-root-user" } else { "" }
                )
            }
        }
    }
    if std::env::var("ENCHUFE_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: the course commands need a network namespace ({last}); ENCHUFE_SKIP_NETNS=1"
        );
        return;
    }
    panic!("cannot make a network namespace for the course commands ({last}): run as root, allow user namespaces, or set ENCHUFE_SKIP_NETNS=1 to skip");
}

/// Runs every lesson of both guides, each in a fresh temporary directory.
async fn run_guides(root: &Path, examples: &Path) {
    let manifest = std::fs::read_to_string(root.join("examples/Cargo.toml")).unwrap();
    for name in ["COURSE.md", "COURSE.en.md"] {
        let lines = guide(name);
        let mut lessons: Vec<Vec<Line>> = Vec::new();
        for line in lines {
            match lessons.last_mut() {
                Some(lesson) if lesson[0].lesson == line.lesson => lesson.push(line),
                _ => lessons.push(vec![line]),
            }
        }
        for lesson in &lessons {
            let tmp = tempfile::tempdir().unwrap();
            let started = Instant::now();
            run_lesson(lesson, root, examples, tmp.path(), &manifest).await;
            eprintln!("{name}: {} in {:?}", lesson[0].lesson, started.elapsed());
        }
    }
}
