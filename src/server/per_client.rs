//! Open connections per client address, capped: one address holding
//! thousands of connections (slow or not) cannot fill the listener.
//!
//! IPv4 addresses count one by one; IPv6 addresses by their /64, the block
//! one host usually holds. Peers in `SLUICE_TRUSTED_PROXIES` are exempt: a
//! reverse proxy carries many clients on its connections. A connection
//! over the cap is refused at once (see [`super::serve`]); a [`Ticket`]
//! frees its place when the connection's socket is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// Connections open per client address.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// What [`PerClient::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// Served; the ticket holds its place.
    Counted(Ticket),
    /// Served, not counted (no limit, or a trusted proxy).
    Exempt,
    /// The address already holds its limit.
    Refused,
}

impl Admission {
    /// The place to keep while the connection lives, unless refused.
    pub fn ticket(self) -> Result<Option<Ticket>, Refused> {
        match self {
            Admission::Counted(t) => Ok(Some(t)),
            Admission::Exempt => Ok(None),
            Admission::Refused => Err(Refused),
        }
    }
}

/// A connection over its address's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// One admitted connection's place; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<PerClient>,
    key: IpAddr,
}

/// The address a connection counts against: IPv4 (also when mapped into
/// IPv6) as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

impl PerClient {
    /// At most `limit` connections per address (0 = no limit), none for
    /// addresses in `exempt`.
    pub fn new(limit: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Whether one more connection from `ip` may be served.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let canonical = ip.to_canonical();
        if self.limit == 0 || self.exempt.iter().any(|n| n.contains(&canonical)) {
            return Admission::Exempt;
        }
        let key = key(canonical);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return Admission::Refused;
        }
        *n += 1;
        Admission::Counted(Ticket {
            owner: self.clone(),
            key,
        })
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key(ip.to_canonical())).copied().unwrap_or(0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_on_drop() {
        let pc = PerClient::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t1 = pc.admit(a).ticket().unwrap().unwrap();
        let _t2 = pc.admit(a).ticket().unwrap().unwrap();
        assert_eq!(pc.admit(a).ticket().unwrap_err(), Refused);
        // another address is not affected
        assert!(pc
            .admit("192.0.2.2".parse().unwrap())
            .ticket()
            .unwrap()
            .is_some());
        drop(t1);
        assert_eq!(pc.open(a), 1);
        assert!(pc.admit(a).ticket().unwrap().is_some());
        // trusted proxies are not counted
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..10 {
            assert!(matches!(pc.admit(proxy), Admission::Exempt));
        }
        // no limit at all
        let free = PerClient::new(0, vec![]);
        for _ in 0..10 {
            assert!(matches!(free.admit(a), Admission::Exempt));
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let pc = PerClient::new(1, vec![]);
        let admit = |ip: &str| pc.admit(ip.parse().unwrap()).ticket();
        let _t = admit("2001:db8:1:2::1").unwrap();
        assert!(admit("2001:db8:1:2:ffff::9").is_err());
        let _other = admit("2001:db8:1:3::1").unwrap();
        let _v4 = admit("192.0.2.7").unwrap();
        assert!(admit("::ffff:192.0.2.7").is_err());
    }
}
