//! Who gets in: counts of connections in their handshake and of sessions,
//! in all and per client address, against `limits.max_handshakes`,
//! `limits.max_handshakes_per_ip`, `limits.max_sessions` and
//! `limits.max_sessions_per_ip`.
//!
//! A slot is held by a [`Ticket`] and given back when the ticket is dropped,
//! so a session cancelled by drop gives its slot back with everything else
//! it owns. The counts live on the executor thread (`Rc<RefCell<..>>`);
//! no borrow is held across an `.await`.
//!
//! Addresses are counted per IPv4 address and per IPv6 /64: one IPv6 host
//! usually holds a whole /64 and could otherwise count as millions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

use crate::config::{canonical, Cidr, Limits};

#[derive(Debug, Default)]
pub struct Admission {
    handshakes: Counts,
    sessions: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Counts {
    fn take(&mut self, key: IpAddr, max_total: usize, max_per_ip: Option<usize>) -> Option<Over> {
        if self.total >= max_total {
            return Some(Over::Total);
        }
        let mine = self.by_ip.entry(key).or_default();
        if max_per_ip.is_some_and(|max| *mine >= max) {
            if *mine == 0 {
                self.by_ip.remove(&key);
            }
            return Some(Over::PerIp);
        }
        *mine += 1;
        self.total += 1;
        None
    }

    fn give_back(&mut self, key: IpAddr) {
        self.total -= 1;
        if let Some(n) = self.by_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&key);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Total,
    PerIp,
}

/// Why a connection or session was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_handshakes`: closed at once.
    Handshakes,
    /// `limits.max_handshakes_per_ip`: closed at once.
    HandshakesPerIp,
    /// `limits.max_sessions`: HTTP 503.
    Sessions,
    /// `limits.max_sessions_per_ip`: HTTP 429.
    SessionsPerIp,
}

impl Refusal {
    /// The limit's configuration key, for log lines.
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Handshakes => "limits.max_handshakes",
            Refusal::HandshakesPerIp => "limits.max_handshakes_per_ip",
            Refusal::Sessions => "limits.max_sessions",
            Refusal::SessionsPerIp => "limits.max_sessions_per_ip",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}", self.key())
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Handshake,
    Session,
}

/// A held slot; dropping it gives the slot back.
pub struct Ticket {
    admission: Rc<RefCell<Admission>>,
    kind: Kind,
    key: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut a = self.admission.borrow_mut();
        match self.kind {
            Kind::Handshake => a.handshakes.give_back(self.key),
            Kind::Session => a.sessions.give_back(self.key),
        }
    }
}

impl Admission {
    /// A slot for a new connection's handshake. `exempt` (a trusted proxy)
    /// skips the per-address limit: behind a proxy every client shares its
    /// address.
    pub fn handshake(
        this: &Rc<RefCell<Admission>>,
        peer: IpAddr,
        exempt: bool,
        limits: &Limits,
    ) -> Result<Ticket, Refusal> {
        let key = key(peer);
        let per_ip = (!exempt).then_some(limits.max_handshakes_per_ip);
        let over = this
            .borrow_mut()
            .handshakes
            .take(key, limits.max_handshakes, per_ip);
        match over {
            None => Ok(Ticket {
                admission: this.clone(),
                kind: Kind::Handshake,
                key,
            }),
            Some(over) => {
                let refusal = match over {
                    Over::Total => Refusal::Handshakes,
                    Over::PerIp => Refusal::HandshakesPerIp,
                };
                crate::metrics::connection_refused(refusal);
                Err(refusal)
            }
        }
    }

    /// A session slot for a client whose request has been read. `exempt`
    /// (the client is itself a trusted proxy: one that did not name a client
    /// behind it) skips the per-address limit.
    pub fn session(
        this: &Rc<RefCell<Admission>>,
        client: IpAddr,
        exempt: bool,
        limits: &Limits,
    ) -> Result<Ticket, Refusal> {
        let key = key(client);
        let per_ip = (!exempt).then_some(limits.max_sessions_per_ip);
        let over = this
            .borrow_mut()
            .sessions
            .take(key, limits.max_sessions, per_ip);
        match over {
            None => Ok(Ticket {
                admission: this.clone(),
                kind: Kind::Session,
                key,
            }),
            Some(over) => {
                let refusal = match over {
                    Over::Total => Refusal::Sessions,
                    Over::PerIp => Refusal::SessionsPerIp,
                };
                crate::metrics::connection_refused(refusal);
                Err(refusal)
            }
        }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.total
    }
}

/// The address a limit counts: IPv4 as it is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(net))
        }
        v4 => v4,
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not one (proxies
/// append, so the rightmost entries are the ones our own proxies wrote).
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = forwarded_for.iter().rev().flat_map(|h| h.rsplit(','));
    for hop in hops {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the header: trust nothing further left.
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, _port) = hop.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits {
            max_handshakes: total,
            max_handshakes_per_ip: per_ip,
            max_sessions: total,
            max_sessions_per_ip: per_ip,
            ..Limits::default()
        }
    }

    #[test]
    fn slots_are_counted_per_address_and_given_back_on_drop() {
        let a = Rc::new(RefCell::new(Admission::default()));
        let l = limits(3, 2);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let t1 = Admission::session(&a, one, false, &l).unwrap();
        let _t2 = Admission::session(&a, one, false, &l).unwrap();
        assert_eq!(
            Admission::session(&a, one, false, &l).err(),
            Some(Refusal::SessionsPerIp)
        );
        let _t3 = Admission::session(&a, two, false, &l).unwrap();
        assert_eq!(
            Admission::session(&a, two, false, &l).err(),
            Some(Refusal::Sessions)
        );
        drop(t1);
        assert_eq!(a.borrow().sessions(), 2);
        let _t4 = Admission::session(&a, one, false, &l).unwrap();
        // Handshakes are counted apart from sessions, and a proxy is exempt
        // from the per-address limit.
        for _ in 0..3 {
            std::mem::forget(Admission::handshake(&a, one, true, &l).unwrap());
        }
        assert_eq!(
            Admission::handshake(&a, one, true, &l).err(),
            Some(Refusal::Handshakes)
        );
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let a = Rc::new(RefCell::new(Admission::default()));
        let l = limits(10, 1);
        let _t = Admission::session(&a, "2001:db8:1:2::1".parse().unwrap(), false, &l).unwrap();
        assert!(Admission::session(&a, "2001:db8:1:2::ffff".parse().unwrap(), false, &l).is_err());
        assert!(Admission::session(&a, "2001:db8:1:3::1".parse().unwrap(), false, &l).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let xff = ["203.0.113.7, 10.0.0.9"];
        assert_eq!(
            client_address(proxy, &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, &xff, &trusted), stranger);
        // A spoofed entry to the left of the real client is ignored.
        let spoofed = ["1.1.1.1, 203.0.113.7"];
        assert_eq!(
            client_address(proxy, &spoofed, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(proxy, &["garbage"], &trusted), proxy);
        assert_eq!(client_address(proxy, &[], &trusted), proxy);
        assert_eq!(
            client_address(proxy, &["[2001:db8::1]:443"], &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
