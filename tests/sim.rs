//! enchufe on turmoil's simulated network (`enchufe::sim`, feature `sim`):
//! a partition healed under a MultiClient, a crashed and restarted server
//! host, message latency against deadlines, peers started in the wrong
//! order, and the same seed giving the same run. Every wait is on
//! simulated time; each simulation is bounded by its `simulation_duration`.
//! Durations asserted here are simulated ones, which the seed fixes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enchufe::client::{Backoff, Event, Reconnect};
use enchufe::peer::PeerEvent;
use enchufe::sim::{self, turmoil};
use enchufe::{handler_fn, Client, ClientConfig, MultiClient, PeerConfig, Profile, ServerConfig};
use tokio::time::Instant;

const PORT: u16 = 9000;
const SERVERS: [&str; 3] = ["s1", "s2", "s3"];
/// How long a link may stay silent while a reply is awaited.
const SILENCE: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const ROUND: Duration = Duration::from_millis(100);

/// Requests each server host received, by (host, number): shared by the
/// hosts and the test, all in this one thread.
type Seen = Arc<Mutex<HashMap<(String, u32), u32>>>;

fn builder(limit: Duration) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder.simulation_duration(limit);
    builder
}

fn server_config() -> ServerConfig {
    ServerConfig::default().profile(Profile::Multiplexed)
}

fn client_config() -> ClientConfig {
    let backoff = Backoff::default()
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_millis(400))
        .forever();
    sim::client_config(
        ClientConfig::default()
            .profile(Profile::Multiplexed)
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(REQUEST_TIMEOUT)
            .silence_timeout(SILENCE)
            .reconnect(Reconnect::default().backoff(backoff)),
    )
}

/// A host serving "NAME:N" for the request "N", counting what it received.
fn echo_host(world: &mut turmoil::Sim<'_>, name: &'static str, seen: &Seen) {
    let seen = seen.clone();
    world.host(name, move || {
        let seen = seen.clone();
        sim::serve(
            PORT,
            server_config(),
            handler_fn(move |req: String, _conn| {
                let seen = seen.clone();
                async move {
                    let n: u32 = req.parse().unwrap_or(u32::MAX);
                    *seen
                        .lock()
                        .unwrap()
                        .entry((name.to_owned(), n))
                        .or_default() += 1;
                    Ok::<_, std::convert::Infallible>(Some(format!("{name}:{n}")))
                }
            }),
        )
    });
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// What one run of the partition scenario saw.
#[derive(Debug, Default, PartialEq)]
struct Run {
    /// Every outcome and event, with its simulated time: compared across
    /// runs of one seed.
    trace: Vec<String>,
    /// Per (server, number): the reply, or the kind of error.
    outcomes: Vec<(String, u32, Result<String, String>)>,
    /// `request_any` per round: the server that answered, or the error.
    any: Vec<(u32, u128, Result<String, String>)>,
    partitioned_at: u128,
    healed_at: u128,
    down_at: Option<u128>,
    up_again_at: Option<u128>,
}

const ROUNDS: u32 = 50;
/// `request_any` sends `ANY + n` in round `n`.
const ANY: u32 = 1000;
const PARTITION_ROUND: u32 = 10;
const HEAL_ROUND: u32 = 30;

/// Three servers, one MultiClient sending a numbered request to each every
/// round; "s2" is cut off from the client at round 10 and healed at 30.
async fn partition_scenario() -> Result<Run, Box<dyn std::error::Error>> {
    let multi = MultiClient::new(client_config());
    for name in SERVERS {
        multi.add(name.to_owned(), format!("{name}:{PORT}")).await?;
    }
    let mut events = multi.events();
    let start = Instant::now();
    let mut run = Run::default();
    for n in 0..ROUNDS {
        if n == PARTITION_ROUND {
            turmoil::partition("client", "s2");
            run.partitioned_at = ms(start);
            run.trace
                .push(format!("{} partition s2", run.partitioned_at));
        }
        if n == HEAL_ROUND {
            turmoil::repair("client", "s2");
            run.healed_at = ms(start);
            run.trace.push(format!("{} heal s2", run.healed_at));
        }
        let asked = SERVERS.map(|name| {
            let multi = &multi;
            async move {
                let key = name.to_owned();
                let got = multi.request::<_, String>(&key, n.to_string()).await;
                (name, got)
            }
        });
        let any_at = ms(start);
        let (replies, any) = tokio::join!(
            futures::future::join_all(asked),
            // Numbered apart from the per-server requests.
            multi.request_any::<_, String>((ANY + n).to_string())
        );
        for (name, got) in replies {
            let got = got.map_err(|e| kind(&e));
            run.trace.push(format!("{} {name} {n} {got:?}", ms(start)));
            run.outcomes.push((name.to_owned(), n, got));
        }
        let any = any.map(|(key, _)| key).map_err(|e| kind(&e));
        run.trace.push(format!("{} any {n} {any:?}", ms(start)));
        run.any.push((n, any_at, any));
        while let Ok((key, event)) = events.try_recv() {
            let at = ms(start);
            let what = match &event {
                Event::Connected { .. } => "connected".to_owned(),
                Event::Disconnected { error } => format!("down ({})", kind(error)),
                Event::Reconnected { attempts, .. } => format!("up again ({attempts} attempts)"),
                Event::GaveUp { .. } => "gave up".to_owned(),
                _ => "other".to_owned(),
            };
            run.trace.push(format!("{at} event {key} {what}"));
            if key == "s2" {
                match event {
                    Event::Disconnected { .. } if run.down_at.is_none() => run.down_at = Some(at),
                    Event::Reconnected { .. } if run.up_again_at.is_none() => {
                        run.up_again_at = Some(at)
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(ROUND).await;
    }
    multi.close().await;
    Ok(run)
}

/// The kind of a client error, for traces and checks.
fn kind(e: &enchufe::client::Error) -> String {
    use enchufe::client::Error;
    match e {
        Error::Timeout(_) => "timeout",
        Error::Silent => "silent",
        Error::Disconnected => "disconnected",
        Error::ClosedByPeer => "closed by peer",
        Error::ConnectTimeout { .. } => "connect timeout",
        Error::Refused { .. } | Error::ConnectVia { .. } => "refused",
        other if other.is_closed() => "closed",
        _ => "other",
    }
    .to_owned()
}

fn run_partition(seed: u64, latency: bool) -> (Run, Seen) {
    let seen = Seen::default();
    let mut b = builder(Duration::from_secs(120));
    if latency {
        b.min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(20));
    }
    let mut world = b.rng_seed(seed).build();
    for name in SERVERS {
        echo_host(&mut world, name, &seen);
    }
    let out = Arc::new(Mutex::new(None));
    let result = out.clone();
    world.client("client", async move {
        let run = partition_scenario().await?;
        *result.lock().unwrap() = Some(run);
        Ok(())
    });
    world.run().expect("the simulation ends cleanly");
    let run = out.lock().unwrap().take().expect("the scenario finished");
    (run, seen)
}

#[test]
fn a_partitioned_server_is_reported_down_routed_around_and_used_again_after_the_heal() {
    let (run, seen) = run_partition(12, true);

    // The other two never notice.
    for (name, n, got) in &run.outcomes {
        if name != "s2" {
            assert_eq!(
                got.as_deref(),
                Ok(format!("{name}:{n}").as_str()),
                "{name} {n}"
            );
        }
    }
    // The partitioned one: fine before, typed errors during, fine after.
    let s2 = |n: u32| {
        run.outcomes
            .iter()
            .find(|(name, m, _)| name == "s2" && *m == n)
            .map(|(_, _, got)| got.clone())
            .unwrap()
    };
    for n in 0..PARTITION_ROUND {
        assert_eq!(s2(n), Ok(format!("s2:{n}")));
    }
    let mut failed = 0;
    for n in PARTITION_ROUND..HEAL_ROUND {
        if let Err(kind) = s2(n) {
            failed += 1;
            assert!(
                ["timeout", "silent", "disconnected", "connect timeout"].contains(&kind.as_str()),
                "round {n}: {kind}"
            );
        }
    }
    assert_eq!(failed, HEAL_ROUND - PARTITION_ROUND, "{:#?}", run.trace);

    // Reported down within the silence deadline: the first request after
    // the cut was sent at the cut, and is dropped between SILENCE and
    // 2.25 × SILENCE later (plus one round for the check to see it).
    let down = run.down_at.expect("s2 reported down");
    assert!(down >= run.partitioned_at, "{:#?}", run.trace);
    let bound = (SILENCE.as_millis() * 9 / 4) + ROUND.as_millis() + REQUEST_TIMEOUT.as_millis();
    assert!(
        down - run.partitioned_at <= bound,
        "down after {} ms",
        down - run.partitioned_at
    );

    // Used again after the heal, and every later request is answered.
    let up = run.up_again_at.expect("s2 reconnected");
    assert!(up >= run.healed_at);
    let back = run
        .outcomes
        .iter()
        .filter(|(name, n, got)| name == "s2" && *n >= HEAL_ROUND && got.is_ok())
        .count();
    assert!(back > 0, "{:#?}", run.trace);
    let late = ((up - run.healed_at) / ROUND.as_millis()) as u32 + HEAL_ROUND + 2;
    for n in late..ROUNDS {
        assert_eq!(s2(n), Ok(format!("s2:{n}")), "{:#?}", run.trace);
    }

    // request_any: once s2 is reported down and until the heal, every
    // request is answered, and never by s2.
    for (n, at, got) in &run.any {
        if *at > down + ROUND.as_millis() && *at < run.healed_at {
            let key = got.as_ref().expect("request_any answered while s2 is down");
            assert_ne!(key, "s2", "round {n}");
        }
    }

    // Nothing answered twice, nothing answered without reaching a server.
    let seen = seen.lock().unwrap();
    assert!(
        seen.values().all(|&count| count == 1),
        "a request ran twice"
    );
    for (name, n, got) in &run.outcomes {
        if got.is_ok() {
            assert_eq!(seen.get(&(name.clone(), *n)), Some(&1), "{name} {n}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (first, _) = run_partition(99, true);
    let (second, _) = run_partition(99, true);
    assert_eq!(first.trace, second.trace);
}

#[test]
fn a_crashed_server_host_is_a_typed_error_then_the_client_reconnects_to_its_restart() {
    let seen = Seen::default();
    let mut world = builder(Duration::from_secs(60)).rng_seed(3).build();
    echo_host(&mut world, "server", &seen);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let record = outcomes.clone();
    let reconnected = Arc::new(Mutex::new(false));
    let saw = reconnected.clone();
    world.client("client", async move {
        let config = client_config().while_down_fail_fast();
        let client = Client::connect_with(format!("server:{PORT}"), config).await?;
        let mut events = client.events();
        for n in 0..60u32 {
            let got = client.request::<_, String>(n.to_string()).await;
            record.lock().unwrap().push((n, got.map_err(|e| kind(&e))));
            while let Ok(event) = events.try_recv() {
                if matches!(event, Event::Reconnected { .. }) {
                    *saw.lock().unwrap() = true;
                }
            }
            tokio::time::sleep(ROUND).await;
        }
        Ok(())
    });
    let (mut crashed, mut restarted) = (false, false);
    while !world.step().expect("the simulation runs") {
        let now = world.elapsed();
        if !crashed && now >= Duration::from_secs(2) {
            world.crash("server");
            crashed = true;
        }
        if !restarted && now >= Duration::from_secs(3) {
            world.bounce("server");
            restarted = true;
        }
    }
    let outcomes = outcomes.lock().unwrap();
    assert!(outcomes[..15]
        .iter()
        .all(|(n, got)| got == &Ok(format!("server:{n}"))));
    let errors: Vec<_> = outcomes
        .iter()
        .filter_map(|(_, got)| got.clone().err())
        .collect();
    assert!(!errors.is_empty(), "the crash was noticed");
    for e in &errors {
        assert!(
            [
                "timeout",
                "silent",
                "disconnected",
                "closed by peer",
                "refused",
                "connect timeout"
            ]
            .contains(&e.as_str()),
            "{e}"
        );
    }
    assert!(
        *reconnected.lock().unwrap(),
        "reconnected to the restarted host"
    );
    assert!(outcomes[45..]
        .iter()
        .all(|(n, got)| got == &Ok(format!("server:{n}"))));
    assert!(seen.lock().unwrap().values().all(|&count| count == 1));
}

/// Sets `WhileDown::FailFast` on a configuration made by `client_config`.
trait FailFast {
    fn while_down_fail_fast(self) -> Self;
}

impl FailFast for ClientConfig {
    fn while_down_fail_fast(self) -> Self {
        let policy = self.reconnect.clone().expect("reconnect is set");
        self.reconnect(policy.while_down(enchufe::client::WhileDown::FailFast))
    }
}

#[test]
fn under_latency_requests_are_answered_and_deadlines_fire_as_configured() {
    let seen = Seen::default();
    let mut b = builder(Duration::from_secs(60));
    // 100 ms each way, every message: a round trip takes at least 200 ms.
    b.min_message_latency(Duration::from_millis(100))
        .max_message_latency(Duration::from_millis(100));
    let mut world = b.rng_seed(5).build();
    echo_host(&mut world, "server", &seen);
    world.client("client", async {
        let config = sim::client_config(
            ClientConfig::default()
                .profile(Profile::Multiplexed)
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Duration::from_secs(1)),
        );
        let client = Client::connect_with(format!("server:{PORT}"), config).await?;
        for n in 0..5u32 {
            let got: String = client.request(n.to_string()).await?;
            assert_eq!(got, format!("server:{n}"));
        }
        // A deadline shorter than the round trip fires, with its own value.
        let short = Duration::from_millis(150);
        let err = client
            .request_timeout::<_, String>("5", short)
            .await
            .unwrap_err();
        assert!(
            matches!(err, enchufe::client::Error::Timeout(d) if d == short),
            "{err}"
        );
        // The connection lives on: the next request is answered.
        let got: String = client.request("6").await?;
        assert_eq!(got, "server:6");
        Ok(())
    });
    world.run().expect("the simulation ends cleanly");
}

#[test]
fn peers_started_in_the_wrong_order_find_each_other() {
    let mut world = builder(Duration::from_secs(60)).rng_seed(8).build();
    let peer_config = |id: &str| {
        PeerConfig::new(id).backoff(
            Backoff::default()
                .initial(Duration::from_millis(50))
                .forever(),
        )
    };
    let echo = |id: &'static str| {
        handler_fn(move |req: String, _conn| async move {
            Ok::<_, std::convert::Infallible>(Some(format!("{id}:{req}")))
        })
    };
    let done = Arc::new(Mutex::new(Vec::new()));
    // "b" is up only 3 simulated seconds after "a" starts dialing it.
    world.host("b", move || async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let peer = sim::peer(PORT, echo("b"), peer_config("b")).await?;
        peer.add_peer(format!("a:{PORT}"));
        std::future::pending::<()>().await;
        drop(peer);
        Ok(())
    });
    let record = done.clone();
    world.client("a", async move {
        let peer = sim::peer(PORT, echo("a"), peer_config("a")).await?;
        let mut events = peer.events();
        peer.add_peer(format!("b:{PORT}"));
        tokio::time::timeout(Duration::from_secs(20), peer.wait_for("b")).await?;
        let reply: String = peer.request("b", "hello").await?;
        record.lock().unwrap().push(reply);
        // Both ended up with one link, whoever dialed first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(peer.peers(), vec!["b".to_owned()]);
        let mut ups = 0;
        while let Ok(event) = events.try_recv() {
            if matches!(event, PeerEvent::Up { .. }) {
                ups += 1;
            }
        }
        assert!(ups >= 1);
        let reply: String = peer.request("b", "again").await?;
        record.lock().unwrap().push(reply);
        Ok(())
    });
    world.run().expect("the simulation ends cleanly");
    assert_eq!(*done.lock().unwrap(), vec!["b:hello", "b:again"]);
}

#[test]
fn a_peer_with_the_default_backoff_keeps_dialing_one_that_starts_minutes_later() {
    let mut world = builder(Duration::from_secs(300)).rng_seed(9).build();
    let echo = |id: &'static str| {
        handler_fn(move |req: String, _conn| async move {
            Ok::<_, std::convert::Infallible>(Some(format!("{id}:{req}")))
        })
    };
    let late = Duration::from_secs(150);
    // "b" lists nobody and starts 150 simulated seconds after "a" began
    // dialing it: only a's dialing can make the link.
    world.host("b", move || async move {
        tokio::time::sleep(late).await;
        let peer = sim::peer(PORT, echo("b"), PeerConfig::new("b")).await?;
        std::future::pending::<()>().await;
        drop(peer);
        Ok(())
    });
    let done = Arc::new(Mutex::new(None));
    let record = done.clone();
    world.client("a", async move {
        // The library's own dialing policy: no backoff set here.
        let peer = sim::peer(PORT, echo("a"), PeerConfig::new("a")).await?;
        let mut events = peer.events();
        peer.add_peer(format!("b:{PORT}"));
        let start = tokio::time::Instant::now();
        tokio::time::timeout(late + Duration::from_secs(10), peer.wait_for("b")).await?;
        // Linked once b was up: within one capped wait (2 s) of it.
        assert!(start.elapsed() >= late, "{:?}", start.elapsed());
        while let Ok(event) = events.try_recv() {
            assert!(!matches!(event, PeerEvent::Unreachable { .. }), "{event:?}");
        }
        let reply: String = peer.request("b", "late").await?;
        *record.lock().unwrap() = Some(reply);
        Ok(())
    });
    world.run().expect("the simulation ends cleanly");
    assert_eq!(done.lock().unwrap().as_deref(), Some("b:late"));
}
