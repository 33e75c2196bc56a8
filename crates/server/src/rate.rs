//! The rate of on-demand picture requests one client may make (`picture_requests_per_s`), as
//! nginx's `limit_req` with a burst and a delay: a client within its rate goes at once; past
//! it, its requests wait their turn (so a client that asks back to back, however fast, is paced
//! to the rate and costs the server only that); past a second of waiting, it is refused `429`
//! with `Retry-After`. A client is an account (by its key) or, without one, an address (IPv6 by
//! its /64). Cache hits count too: answering thousands a second is what costs CPU.
//!
//! The algorithm is GCRA (one instant per client, the "theoretical arrival time"): no queue and
//! no timer per client, written here because the crates that do it (governor) bring a clock and
//! a keyed store of their own where this needs the injected clock and a bounded map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livesnap_core::clock::Clock;

/// A client may run this far ahead of its rate before it waits: a second's worth of requests.
const BURST: Duration = Duration::from_secs(1);
/// Longest a request waits its turn; one that would wait longer is refused.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Most clients tracked; when full, those back within their rate are forgotten first.
const MAX_CLIENTS: usize = 65_536;

/// Who is paced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An account (any of its keys).
    Account(String),
    /// An address that sent no account key (the open API, the administrator's key).
    Address(IpAddr),
}

/// What [`PictureRate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go now.
    Now,
    /// Go after this wait (the request's turn is kept).
    After(Duration),
    /// Refused: try again in this many seconds.
    Refused { retry_after_s: u64 },
}

/// The picture request rate of every client.
pub struct PictureRate {
    /// Time between two requests at the rate; `None`: no limit.
    interval: Option<Duration>,
    per_s: u32,
    /// Client -> its theoretical arrival time, on `clock`.
    clients: Mutex<HashMap<Client, Duration>>,
    clock: Arc<dyn Clock>,
}

impl PictureRate {
    /// At most `per_s` requests a second per client (a second's burst); 0: no limit.
    pub fn new(per_s: u32, clock: Arc<dyn Clock>) -> PictureRate {
        PictureRate {
            interval: (per_s > 0).then(|| Duration::from_secs(1) / per_s),
            per_s,
            clients: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The limit, requests per second (0: none).
    pub fn per_s(&self) -> u32 {
        self.per_s
    }

    /// Takes `client`'s next turn.
    pub fn admit(&self, client: Client) -> Admit {
        let Some(interval) = self.interval else {
            return Admit::Now;
        };
        let now = self.clock.now();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, tat| *tat > now);
            if clients.len() >= MAX_CLIENTS {
                // Every tracked client is ahead of its rate: a new one goes untracked rather
                // than growing the map or making the tracked ones forget their turns.
                return Admit::Now;
            }
        }
        // This request's turn ends one interval after the client's last: within a second's
        // burst it goes now, within a second more it waits, past that it is refused (and its
        // turn is not taken). A request given up while it waits keeps its turn taken: that
        // costs only its own client.
        let next = clients.get(&client).copied().unwrap_or(now).max(now) + interval;
        let ahead = next - now;
        if ahead <= BURST {
            clients.insert(client, next);
            return Admit::Now;
        }
        let wait = ahead - BURST;
        if wait > MAX_WAIT {
            return Admit::Refused {
                retry_after_s: wait.as_secs_f64().ceil() as u64,
            };
        }
        clients.insert(client, next);
        Admit::After(wait)
    }
}

/// The client a request counts against: its account, else its address; `None` for the holder
/// of `admin_key` (the operator, whose console asks for a picture of every stream at once),
/// who is not paced.
pub fn client_of(caller: &crate::auth::Caller, peer: Option<IpAddr>) -> Option<Client> {
    match caller {
        crate::auth::Caller::Account { name, .. } => Some(Client::Account(name.clone())),
        crate::auth::Caller::Admin => None,
        // Every HTTP connection carries its peer (http.rs); none would mean a test's router.
        crate::auth::Caller::Open => {
            peer.map(|ip| Client::Address(ingest::frontend::source_of(ip)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livesnap_core::clock::ManualClock;

    fn addr(last: u8) -> Client {
        Client::Address(IpAddr::from([10, 0, 0, last]))
    }

    /// 10/s: a second's burst goes at once, then each request waits its turn (up to a second),
    /// then they are refused; another client is not affected; the rate comes back with time.
    #[test]
    fn a_client_past_its_rate_waits_then_is_refused_alone() {
        let clock = Arc::new(ManualClock::default());
        let rate = PictureRate::new(10, clock.clone());
        for i in 0..10 {
            assert_eq!(rate.admit(addr(1)), Admit::Now, "request {i} of the burst");
        }
        let mut waits = Vec::new();
        loop {
            match rate.admit(addr(1)) {
                Admit::After(w) => waits.push(w),
                Admit::Refused { retry_after_s } => {
                    assert_eq!(retry_after_s, 2);
                    break;
                }
                Admit::Now => panic!("past the burst, nothing goes at once"),
            }
        }
        assert_eq!(waits.len(), 10, "a second's wait holds 10 turns at 10/s");
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        assert!(*waits.last().unwrap() <= MAX_WAIT);
        // Someone else is not slowed.
        assert_eq!(rate.admit(addr(2)), Admit::Now);
        // Three seconds on, the first client is within its rate again.
        clock.advance(Duration::from_secs(3));
        assert_eq!(rate.admit(addr(1)), Admit::Now);
    }

    /// Accounts count by name from any address; the open API by address; the holder of
    /// `admin_key` not at all.
    #[test]
    fn who_is_paced() {
        use crate::auth::Caller;
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let account = Caller::Account {
            name: "acme".into(),
            role: livesnap_core::accounts::Role::Read,
        };
        assert_eq!(
            client_of(&account, ip),
            Some(Client::Account("acme".into()))
        );
        assert_eq!(
            client_of(&account, None),
            Some(Client::Account("acme".into()))
        );
        assert_eq!(client_of(&Caller::Open, ip), Some(addr(1)));
        assert_eq!(client_of(&Caller::Admin, ip), None);
    }

    #[test]
    fn no_limit_admits_everything() {
        let rate = PictureRate::new(0, Arc::new(ManualClock::default()));
        for _ in 0..10_000 {
            assert_eq!(rate.admit(addr(1)), Admit::Now);
        }
    }

    /// The map never holds more than its bound, however many addresses ask.
    #[test]
    fn the_clients_tracked_are_bounded() {
        let rate = PictureRate::new(1, Arc::new(ManualClock::default()));
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(rate.admit(Client::Address(ip)), Admit::Now);
        }
        assert!(rate.clients.lock().unwrap().len() <= MAX_CLIENTS);
        // A client tracked before the map filled keeps its turn: at 1/s, its second request
        // in the same instant waits.
        let first = Client::Address(IpAddr::from(0u32.to_be_bytes()));
        assert!(matches!(rate.admit(first), Admit::After(_)));
    }
}
