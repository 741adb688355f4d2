//! The chat example's `--bus redis://HOST:PORT`: the server attaches its
//! room to a cluster on that Redis, so chat servers on different ports form
//! one room. Without the `redis` feature, asking for it is an error that
//! says how to build with it.

use enchufe::ServerHandle;

use super::room::Room;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Where the room finds its cluster once the server runs.
#[cfg(feature = "redis")]
pub(crate) type Slot = std::sync::Arc<std::sync::OnceLock<enchufe::bus::Cluster>>;
/// Nothing to hold without the `redis` feature.
#[cfg(not(feature = "redis"))]
#[derive(Clone)]
pub(crate) struct Slot;

/// The room's slot for a cluster, taken before the room is served.
pub(crate) fn slot(_room: &Room) -> Slot {
    #[cfg(feature = "redis")]
    return _room.cluster.clone();
    #[cfg(not(feature = "redis"))]
    Slot
}

/// Attaches the running server's room to the bus at `url`, if any.
#[cfg(feature = "redis")]
pub(crate) fn attach(server: &ServerHandle, slot: Slot, url: Option<&str>) -> Result<()> {
    use enchufe::bus::{self, Cluster, RedisBus, RedisConfig};
    let Some(url) = url else { return Ok(()) };
    let bus = std::sync::Arc::new(RedisBus::open(url, RedisConfig::default())?);
    let mut config = bus::Config::default();
    // A server cut from Redis for a while catches up from the room's
    // history when it is back (1,000 lines or 2 minutes).
    config.history = Some(bus::History::default());
    let cluster = Cluster::attach(server, bus, config)?;
    tracing::info!(bus = url, node = %cluster.node(), "the room spans every server on this bus");
    let _ = slot.set(cluster);
    Ok(())
}

#[cfg(not(feature = "redis"))]
pub(crate) fn attach(_server: &ServerHandle, _slot: Slot, url: Option<&str>) -> Result<()> {
    match url {
        Some(_) => Err(
            "built without the bus: run with `cargo run --features redis --example chat ...`"
                .into(),
        ),
        None => Ok(()),
    }
}

/// Leaves the cluster, so the other servers drop this one's members at once.
pub(crate) async fn detach(_slot: &Slot) {
    #[cfg(feature = "redis")]
    if let Some(cluster) = _slot.get() {
        cluster.clone().detach().await;
    }
}
