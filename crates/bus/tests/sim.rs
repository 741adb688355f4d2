//! The crashed-server test of `tests/redis.rs` on turmoil's simulated
//! network and clock (`enchufe::sim`): two servers on one bus, a member on
//! each; server b's host is crashed (its tasks dropped, no goodbye), and
//! b's member leaves a's presence within the TTL, measured in simulated
//! time, so the bound can be tight: after b's last heartbeat, one TTL.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enchufe::bus::{self, Cluster, MemoryBus};
use enchufe::client::{self, Client, Profile};
use enchufe::server::handler_fn;
use enchufe::{sim, ServerHandle};

const PORT: u16 = 9000;
const HEARTBEAT: Duration = Duration::from_millis(100);
const TTL: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(10);

type Nodes = Arc<Mutex<HashMap<&'static str, (ServerHandle, Cluster)>>>;

fn node(nodes: &Nodes, name: &'static str) -> (ServerHandle, Cluster) {
    nodes.lock().unwrap()[name].clone()
}

#[test]
fn a_crashed_server_leaves_presence_one_ttl_after_its_last_heartbeat() {
    let mut world = sim::turmoil::Builder::new()
        .rng_seed(11)
        .simulation_duration(Duration::from_secs(30))
        .build();
    let bus = MemoryBus::new();
    let nodes: Nodes = Arc::default();
    for name in ["a", "b"] {
        let (bus, nodes) = (bus.clone(), nodes.clone());
        world.host(name, move || {
            let (bus, nodes) = (bus.clone(), nodes.clone());
            async move {
                let echo =
                    handler_fn(|req: String, _conn| async move { Ok::<_, Infallible>(Some(req)) });
                let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
                let server = sim::server(PORT).await?.with_config(config).serve(echo);
                let mut config = bus::Config::default();
                config.heartbeat = HEARTBEAT;
                config.presence_ttl = TTL;
                let cluster = Cluster::attach(&server, Arc::new(bus), config).unwrap();
                nodes
                    .lock()
                    .unwrap()
                    .insert(name, (server.clone(), cluster));
                server.stopped().await;
                Ok(())
            }
        });
    }
    let ready = Arc::new(Mutex::new(false));
    let gone_after = Arc::new(Mutex::new(None));
    let (set_ready, set_gone) = (ready.clone(), gone_after.clone());
    let shared = nodes.clone();
    world.client("test", async move {
        let config = || sim::client_config(client::Config::default().profile(Profile::Multiplexed));
        let on_a = Client::connect_with(format!("a:{PORT}"), config()).await?;
        let on_b = Client::connect_with(format!("b:{PORT}"), config()).await?;
        for client in [&on_a, &on_b] {
            let _: String = client.request("hola").await?;
        }
        let (a, on_a_cluster) = node(&shared, "a");
        let (b, on_b_cluster) = node(&shared, "b");
        on_a_cluster.join("sala", a.connections()[0].id())?;
        on_b_cluster.join("sala", b.connections()[0].id())?;
        let gone = on_b_cluster.member(b.connections()[0].id());
        while on_a_cluster.members("sala").len() < 2 {
            tokio::time::sleep(POLL).await;
        }

        // The world crashes b at its next step.
        *set_ready.lock().unwrap() = true;
        let crashed = tokio::time::Instant::now();
        while on_a_cluster.members("sala").contains(&gone) {
            tokio::time::sleep(POLL).await;
        }
        *set_gone.lock().unwrap() = Some(crashed.elapsed());

        // a goes on: its member still gets the room.
        assert_eq!(on_a_cluster.to_room("sala", "sigue")?, 1);
        assert_eq!(on_a.recv::<String>().await?.as_deref(), Some("sigue"));
        assert_eq!(on_a_cluster.nodes().len(), 1);
        Ok(())
    });
    let mut crashed = false;
    while !world.step().expect("the simulation runs") {
        if !crashed && *ready.lock().unwrap() {
            world.crash("b");
            crashed = true;
        }
    }
    assert!(crashed);
    let gone = gone_after
        .lock()
        .unwrap()
        .expect("b's member left a's presence");
    // b's last heartbeat was at most one period before the crash; its
    // member is dropped one TTL after it (to a poll and a step).
    assert!(gone >= TTL - HEARTBEAT, "gone after {gone:?}: too soon");
    assert!(
        gone <= TTL + POLL * 2,
        "gone after {gone:?}: later than the TTL"
    );
}
