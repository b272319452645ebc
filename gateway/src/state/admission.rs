//! Connection admission: at most `max` connections on the node (TCP — HTTP, REST and the
//! WebSockets upgraded from them — and QUIC) and at most `per_ip` from one address. A
//! connection over either limit is refused at accept, before it costs a task, a buffer or a
//! TLS handshake. The count is held by an [`Admitted`] guard that lives as long as the
//! connection (an upgraded WebSocket keeps its HTTP connection's guard).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NodeFull,
    AddressFull,
}

/// The node's connection counts.
pub(crate) struct Admission {
    max: usize,
    /// 0: no per-address limit (behind a proxy every client has its address).
    per_ip: u32,
    total: AtomicUsize,
    by_ip: DashMap<IpAddr, u32>,
    pub(crate) refused_node_full: AtomicU64,
    pub(crate) refused_address_full: AtomicU64,
}

/// One admitted connection; dropping it gives its place back.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admitted {
    /// The address the connection came from.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Admission {
    pub(crate) fn new(max: usize, per_ip: u32) -> Self {
        Self {
            max,
            per_ip,
            total: AtomicUsize::new(0),
            by_ip: DashMap::new(),
            refused_node_full: AtomicU64::new(0),
            refused_address_full: AtomicU64::new(0),
        }
    }

    /// Admits a connection from `ip`, or says which limit it is over.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.refused_node_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::NodeFull);
        }
        if self.per_ip > 0 {
            let mut n = self.by_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                self.refused_address_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::AddressFull);
            }
            *n += 1;
        }
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections admitted now.
    pub(crate) fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        if a.per_ip > 0 {
            a.by_ip.remove_if_mut(&self.ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_node_and_per_address_and_places_come_back() {
        let a = Arc::new(Admission::new(3, 2));
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let one = a.admit(x).expect("first");
        let two = a.admit(x).expect("second");
        assert_eq!(a.admit(x).err(), Some(Refusal::AddressFull));
        let three = a.admit(y).expect("another address");
        assert_eq!(a.admit(y).err(), Some(Refusal::NodeFull));
        assert_eq!(a.open(), 3);
        drop(one);
        assert!(a.admit(x).is_ok(), "a place came back (and went again)");
        drop((two, three));
        assert_eq!(a.open(), 0);
        assert!(a.by_ip.is_empty(), "no entry left for idle addresses");
        assert_eq!(a.refused_node_full.load(Ordering::Relaxed), 1);
        assert_eq!(a.refused_address_full.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn zero_per_address_means_no_per_address_limit() {
        let a = Arc::new(Admission::new(100, 0));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..100).map(|_| a.admit(ip).expect("in")).collect();
        assert_eq!(a.admit(ip).err(), Some(Refusal::NodeFull));
        drop(held);
    }
}
