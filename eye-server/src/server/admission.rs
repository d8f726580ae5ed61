//! Which accepted connections are served: at most `max_total` at once, and at most
//! `max_per_client` from one client address, so one client (a flood of connections
//! that never finish their headers, say) cannot take every slot, file descriptor and
//! read buffer, and health checks from elsewhere are still answered.
//!
//! A client is an IPv4 address, or an IPv6 /64 (one host commonly holds a whole /64,
//! so counting single IPv6 addresses would give it 2^64 shares). IPv4-mapped IPv6
//! addresses count as IPv4.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::metrics::names;

/// Why a connection was refused, the label of
/// [`names::HTTP_CONNECTIONS_REFUSED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot is taken.
    Total,
    /// This client holds its share.
    PerClient,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerClient => "per_ip",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The connection counts, shared by the accept loop and every connection's [`Slot`].
pub(crate) struct Admission {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
}

/// A served connection's place; dropping it (when the connection ends) frees it.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A slot for a connection from `peer`, or why there is none.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let client = client_of(peer);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let held = counts.per_client.entry(client).or_insert(0);
        if *held >= self.max_per_client {
            return Err(Refusal::PerClient);
        }
        *held += 1;
        counts.total += 1;
        metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).set(counts.total as f64);
        Ok(Slot {
            admission: Arc::clone(self),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.per_client.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_client.remove(&self.client);
            }
        }
        metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).set(counts.total as f64);
    }
}

/// The address a client's share is counted by.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !((1_u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_share_and_others_the_rest() {
        let admission = Admission::new(3, 2);
        let a1 = admission.admit(ip("10.0.0.1")).unwrap();
        let _a2 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refusal::PerClient)
        );
        let _b = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        drop(a1);
        assert!(
            admission.admit(ip("10.0.0.1")).is_ok(),
            "a freed slot is reused"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_of(ip("2001:db8::1")),
            client_of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            client_of(ip("2001:db8::1")),
            client_of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
