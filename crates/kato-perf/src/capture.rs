//! The capture loop: one `AF_PACKET` socket over every interface of the network namespace the
//! plug-in shares with the app (`lo` included: the app's calls to itself), the BPF program of
//! the analysed ports, and a thread that reads copies of packets, tracks flows and records
//! exchanges. Nothing sits in the app's path: the kernel hands the socket copies.

use std::collections::{BTreeMap, HashMap};
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::exchange::Protocol;
use crate::flow::FlowTracker;
use crate::packet::tcp_segment;
use crate::stats::Stats;

/// `ETH_P_ALL`, in network byte order as `socket(2)` wants it.
const ETH_P_ALL: u16 = 0x0003;
/// Kernel buffer for packets not read yet: bursts are absorbed here before anything drops.
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// How often the loop looks at port changes and stops even when no packet comes.
const TICK: Duration = Duration::from_millis(100);
/// A kernel timestamp older than this is not believed (the wall clock was stepped).
const MAX_AGE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "cannot open the packet socket: {0}; the plug-in needs CAP_NET_RAW (podman's default capabilities have it; \
         on Kubernetes add it to the plug-in container's securityContext)"
    )]
    Open(#[source] std::io::Error),
    #[error("cannot set the packet filter for ports {ports:?}: {source}")]
    Filter {
        ports: Vec<u16>,
        #[source]
        source: std::io::Error,
    },
}

/// The capture clock: nanoseconds since the capture started. Packet times and summary times
/// use the same clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A running capture; dropping it does not stop it, [`Capture::stop`] does.
#[derive(Debug)]
pub struct Capture {
    pub stats: Arc<Mutex<Stats>>,
    pub clock: Clock,
    ports: Arc<Mutex<Option<BTreeMap<u16, Protocol>>>>,
    analysed: Arc<Mutex<BTreeMap<u16, Protocol>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn open() -> Result<Socket, CaptureError> {
    let proto = SockProtocol::from(i32::from(ETH_P_ALL.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto)).map_err(CaptureError::Open)?;
    // Nothing passes until the first ports are set.
    attach(&socket, &[])?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    // The kernel then tells, with each packet, how many it dropped for lack of room.
    setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(|e| CaptureError::Open(e.into()))?;
    // And when it took each packet: latencies then do not depend on when the loop reads.
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(|e| CaptureError::Open(e.into()))?;
    socket.set_read_timeout(Some(TICK)).map_err(CaptureError::Open)?;
    Ok(socket)
}

/// One packet read.
struct Received {
    len: usize,
    /// The kernel's count of packets dropped for this socket (`SO_RXQ_OVFL`), when sent along.
    drops: Option<u32>,
    /// How long ago the kernel took the packet (`SO_TIMESTAMPNS`), when it said.
    age: Option<Duration>,
}

/// The control messages each packet may come with: a drop count and a timestamp.
fn control_space() -> Vec<u8> {
    nix::cmsg_space!(u32, nix::sys::time::TimeSpec)
}

fn receive(socket: &Socket, buf: &mut [u8], cmsg: &mut [u8]) -> Result<Received, Errno> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut got = Received {
        len: msg.bytes,
        drops: None,
        age: None,
    };
    for m in msg.cmsgs().into_iter().flatten() {
        match m {
            ControlMessageOwned::RxqOvfl(n) => got.drops = Some(n),
            ControlMessageOwned::ScmTimestampns(t) => {
                let taken = Duration::from(t);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                // A wall clock stepped since, or a stale stamp: the read time is nearer.
                got.age = now.checked_sub(taken).filter(|a| *a < MAX_AGE);
            }
            _ => {}
        }
    }
    Ok(got)
}

fn attach(socket: &Socket, ports: &[u16]) -> Result<(), CaptureError> {
    socket
        .attach_filter(&crate::bpf::program(ports))
        .map_err(|source| CaptureError::Filter {
            ports: ports.to_vec(),
            source,
        })
}

impl Capture {
    /// Opens the socket and starts the loop, analysing nothing until [`Capture::set_ports`].
    pub fn start(route_cap: usize) -> Result<Capture, CaptureError> {
        let socket = open()?;
        let clock = Clock::new();
        let stats = Arc::new(Mutex::new(Stats::new(route_cap, clock.now())));
        let ports = Arc::new(Mutex::new(None));
        let analysed = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let looped = Loop {
            socket,
            clock,
            stats: stats.clone(),
            ports: ports.clone(),
            analysed: analysed.clone(),
            stop: stop.clone(),
            tracker: FlowTracker::default(),
        };
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || looped.run())
            .map_err(CaptureError::Open)?;
        Ok(Capture {
            stats,
            clock,
            ports,
            analysed,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Analyses these ports from now on; the filter is rebuilt within one tick.
    pub fn set_ports(&self, ports: BTreeMap<u16, Protocol>) {
        *lock(&self.ports) = Some(ports);
    }

    /// The ports analysed now (after the loop applied the last change).
    pub fn analysed(&self) -> BTreeMap<u16, Protocol> {
        lock(&self.analysed).clone()
    }

    /// The JSON summary now.
    pub fn summary(&self) -> crate::stats::Summary {
        let analysed = self.analysed();
        lock(&self.stats).summary(self.clock.now(), &analysed)
    }

    /// Prometheus text now.
    pub fn metrics(&self) -> String {
        lock(&self.stats).encode()
    }

    /// Stops the loop and waits for it (at most one tick).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Loop {
    socket: Socket,
    clock: Clock,
    stats: Arc<Mutex<Stats>>,
    ports: Arc<Mutex<Option<BTreeMap<u16, Protocol>>>>,
    analysed: Arc<Mutex<BTreeMap<u16, Protocol>>>,
    stop: Arc<AtomicBool>,
    tracker: FlowTracker,
}

impl Loop {
    fn run(mut self) {
        let mut buf = vec![0u8; 0x0004_0000];
        let mut out = Vec::new();
        let mut last_tick = 0u64;
        let mut flows_seen = 0u64;
        let mut untracked_seen = 0u64;
        let mut drops_seen = 0u32;
        let mut cmsg = control_space();
        let counters = lock(&self.stats).counters.clone();
        while !self.stop.load(Ordering::Acquire) {
            let change = lock(&self.ports).take();
            if let Some(ports) = change {
                self.apply(ports);
            }
            let (n, age) = match receive(&self.socket, &mut buf, &mut cmsg) {
                Ok(r) => {
                    if let Some(total) = r.drops {
                        // The kernel's count for this socket, since it opened (it wraps at 2^32).
                        counters.dropped.inc_by(u64::from(total.wrapping_sub(drops_seen)));
                        drops_seen = total;
                    }
                    (r.len, r.age)
                }
                Err(Errno::EAGAIN | Errno::EINTR) => (0, None),
                Err(e) => {
                    tracing::error!(error = %e, "reading packets failed; capture stops");
                    return;
                }
            };
            let now = self.clock.now();
            let ts = age.map_or(now, |a| now.saturating_sub(u64::try_from(a.as_nanos()).unwrap_or(0)));
            if n > 0 {
                counters.packets.inc();
                counters.bytes.inc_by(n as u64);
                match tcp_segment(&buf[..n]) {
                    Some(seg) => {
                        let broke = self.tracker.segment(&seg, ts, &mut out);
                        if !out.is_empty() || broke.is_some() {
                            let mut stats = lock(&self.stats);
                            for (port, protocol, e) in out.drain(..) {
                                stats.record(ts, port, protocol, &e);
                            }
                            if let Some(why) = broke {
                                stats.undecodable(why.as_str());
                            }
                        }
                    }
                    // A packet the filter passed but that does not parse: cut or broken.
                    None => {
                        counters.dropped.inc();
                    }
                }
            }
            let c = &self.tracker.counters;
            if c.flows != flows_seen || c.untracked != untracked_seen {
                counters.flows.inc_by(c.flows - flows_seen);
                counters.untracked.inc_by(c.untracked - untracked_seen);
                (flows_seen, untracked_seen) = (c.flows, c.untracked);
            }
            if ts.saturating_sub(last_tick) > 10_000_000_000 {
                last_tick = ts;
                self.tracker.expire(ts);
                let analysed: Vec<u16> = lock(&self.analysed).keys().copied().collect();
                lock(&self.stats).prune(ts, &analysed);
            }
        }
    }

    fn apply(&mut self, ports: BTreeMap<u16, Protocol>) {
        let list: Vec<u16> = ports.keys().copied().collect();
        if let Err(e) = attach(&self.socket, &list) {
            tracing::error!(error = %e, "the old filter stays");
            return;
        }
        self.tracker
            .set_ports(ports.iter().map(|(p, proto)| (*p, *proto)).collect::<HashMap<_, _>>());
        lock(&self.stats).prune(self.clock.now(), &list);
        *lock(&self.analysed) = ports;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Needs CAP_NET_RAW (the tests run as root). The kernel tells its count with the next
    /// packet it queues after the drops.
    #[test]
    fn the_kernels_drops_are_reported() {
        let socket = open().expect("the tests run as root (CAP_NET_RAW)");
        socket.set_recv_buffer_size(1).unwrap(); // the kernel's minimum: a packet or two
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        attach(&socket, &[port]).unwrap();
        let reader = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            std::io::copy(&mut c, &mut std::io::sink()).unwrap();
        });
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        for _ in 0..64 {
            c.write_all(&[b'x'; 16 * 1024]).unwrap();
        }
        let mut buf = vec![0u8; 0x0004_0000];
        let mut cmsg = control_space();
        let mut most = 0;
        // Drain what was queued, then one more packet, which carries the count.
        while receive(&socket, &mut buf, &mut cmsg).is_ok() {}
        c.write_all(b"one more").unwrap();
        while let Ok(r) = receive(&socket, &mut buf, &mut cmsg) {
            most = most.max(r.drops.unwrap_or(0));
            assert!(
                r.age.is_some_and(|a| a < Duration::from_secs(5)),
                "each packet has its kernel time"
            );
        }
        drop(c);
        reader.join().unwrap();
        assert!(most > 0, "the kernel dropped packets it had no room for, and said so");
    }
}
