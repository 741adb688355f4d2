//! Connections per client address: one address cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Live connections per IP address, at most `limit` each.
#[derive(Debug)]
pub(crate) struct PerAddress {
    limit: usize,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place among its address's; given back on drop.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    ip: IpAddr,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    pub(crate) fn new(limit: usize) -> PerAddress {
        PerAddress {
            limit: limit.max(1),
            live: Arc::default(),
        }
    }

    /// A place for one more connection from `ip`, or `None` at the limit.
    pub(crate) fn take(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let n = live.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            live: self.live.clone(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = live.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // The map holds only addresses with live connections.
                live.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_its_places_back() {
        let per = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let (one, two) = (per.take(a).unwrap(), per.take(a).unwrap());
        assert!(per.take(a).is_none());
        let other = per.take(b).unwrap();
        drop(one);
        let three = per.take(a).unwrap();
        drop((two, three, other));
        assert!(per.live.lock().unwrap().is_empty(), "no entry left behind");
    }
}
