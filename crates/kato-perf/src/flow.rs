//! TCP flow tracking: segments of each (client, server) connection are put back in order per
//! direction and handed to that port's protocol decoder. Out-of-order segments wait within a
//! bound; retransmitted bytes are dropped; a hole that does not fill within the bound makes the
//! flow undecodable (counted, then ignored until it closes).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::exchange::{Exchange, Protocol, Undecodable};
use crate::http::HttpConn;
use crate::mysql::MysqlConn;

/// Out-of-order segments kept per direction.
const MAX_OUT_OF_ORDER: usize = 64;
/// Out-of-order bytes kept per direction.
const MAX_OUT_OF_ORDER_BYTES: usize = 256 * 1024;
/// Connections tracked at once; past it new ones are counted and ignored.
pub const MAX_FLOWS: usize = 16_384;
/// A flow with no segment for this long is forgotten.
pub const IDLE_NS: u64 = 300 * 1_000_000_000;

/// One TCP segment, as decoded from a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

/// One direction's reassembly.
#[derive(Debug, Default)]
struct Stream {
    /// The sequence number expected next; none before the first segment.
    next: Option<u32>,
    out_of_order: Vec<(u32, Vec<u8>)>,
    out_of_order_bytes: usize,
}

impl Stream {
    /// Puts a segment in order; `deliver` gets each in-order run of new bytes. `Err` when a hole
    /// cannot be waited for any longer.
    fn push(&mut self, seq: u32, syn: bool, payload: &[u8], mut deliver: impl FnMut(&[u8])) -> Result<(), Undecodable> {
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let next = *self.next.get_or_insert(data_seq);
        if payload.is_empty() {
            return Ok(());
        }
        let offset = data_seq.wrapping_sub(next) as i32;
        if offset > 0 {
            if self.out_of_order.len() == MAX_OUT_OF_ORDER
                || self.out_of_order_bytes + payload.len() > MAX_OUT_OF_ORDER_BYTES
            {
                return Err(Undecodable::Gap);
            }
            self.out_of_order_bytes += payload.len();
            self.out_of_order.push((data_seq, payload.to_vec()));
            return Ok(());
        }
        self.take(data_seq, payload, &mut deliver);
        // Segments that now touch the stream, repeatedly.
        while let Some(i) = self
            .out_of_order
            .iter()
            .position(|(s, _)| s.wrapping_sub(self.next.unwrap_or(*s)) as i32 <= 0)
        {
            let (s, bytes) = self.out_of_order.swap_remove(i);
            self.out_of_order_bytes -= bytes.len();
            self.take(s, &bytes, &mut deliver);
        }
        Ok(())
    }

    /// Delivers the part of a segment beyond what was delivered already.
    fn take(&mut self, seq: u32, payload: &[u8], deliver: &mut impl FnMut(&[u8])) {
        let next = self.next.unwrap_or(seq);
        let seen = next.wrapping_sub(seq) as usize;
        if seen >= payload.len() {
            return; // a retransmit of bytes already delivered
        }
        deliver(&payload[seen..]);
        self.next = Some(next.wrapping_add((payload.len() - seen) as u32));
    }
}

#[derive(Debug)]
enum Decoder {
    Http(HttpConn),
    Mysql(MysqlConn),
}

#[derive(Debug)]
struct Flow {
    decoder: Decoder,
    to_server: Stream,
    to_client: Stream,
    broken: bool,
    /// The first segment seen was not a SYN: the capture started while it was open.
    joined: bool,
    fins: u8,
    last_seen: u64,
}

/// The identity of a connection: (client, server).
pub type FlowKey = (SocketAddr, SocketAddr);

/// What the tracker has counted, for metrics and the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlowCounters {
    pub flows: u64,
    pub undecodable: BTreeMap<&'static str, u64>,
    /// Connections not tracked because `MAX_FLOWS` were open.
    pub untracked: u64,
}

/// All connections to the analysed ports.
#[derive(Debug, Default)]
pub struct FlowTracker {
    ports: HashMap<u16, Protocol>,
    flows: HashMap<FlowKey, Flow>,
    pub counters: FlowCounters,
}

impl FlowTracker {
    pub fn new(ports: HashMap<u16, Protocol>) -> FlowTracker {
        FlowTracker {
            ports,
            ..FlowTracker::default()
        }
    }

    /// Changes the analysed ports; flows of ports no longer analysed are forgotten.
    pub fn set_ports(&mut self, ports: HashMap<u16, Protocol>) {
        self.flows.retain(|(_, server), _| ports.contains_key(&server.port()));
        self.ports = ports;
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Feeds one segment seen at `ts` (ns); complete exchanges go to `out` with their server port.
    /// Returns why, when this segment made its flow undecodable.
    pub fn segment(
        &mut self,
        seg: &Segment<'_>,
        ts: u64,
        out: &mut Vec<(u16, Protocol, Exchange)>,
    ) -> Option<Undecodable> {
        let (key, to_server) = if self.ports.contains_key(&seg.dst.port()) {
            ((seg.src, seg.dst), true)
        } else if self.ports.contains_key(&seg.src.port()) {
            ((seg.dst, seg.src), false)
        } else {
            return None;
        };
        let protocol = self.ports[&key.1.port()];
        if !self.flows.contains_key(&key) {
            // A connection starts with a SYN, or (joined mid-stream) with data; the last ACKs
            // after both FINs must not start a new one.
            if seg.rst || (!seg.syn && seg.payload.is_empty()) {
                return None;
            }
            if self.flows.len() >= MAX_FLOWS {
                self.counters.untracked += 1;
                return None;
            }
            self.counters.flows += 1;
            let decoder = match protocol {
                Protocol::Http => Decoder::Http(HttpConn::default()),
                Protocol::Mysql => Decoder::Mysql(MysqlConn::default()),
            };
            self.flows.insert(
                key,
                Flow {
                    decoder,
                    to_server: Stream::default(),
                    to_client: Stream::default(),
                    broken: false,
                    joined: !seg.syn,
                    fins: 0,
                    last_seen: ts,
                },
            );
        }
        let flow = self.flows.get_mut(&key)?;
        flow.last_seen = ts;
        let mut broke = None;
        if !flow.broken {
            let mut exchanges = Vec::new();
            let result = feed(flow, to_server, seg, ts, &mut exchanges);
            out.extend(exchanges.into_iter().map(|e| (key.1.port(), protocol, e)));
            if let Err(mut why) = result {
                if flow.joined && why == Undecodable::Malformed {
                    why = Undecodable::MidStream;
                }
                flow.broken = true;
                *self.counters.undecodable.entry(why.as_str()).or_default() += 1;
                broke = Some(why);
            }
        }
        if seg.fin {
            flow.fins += 1;
        }
        if seg.rst || flow.fins >= 2 {
            self.flows.remove(&key);
        }
        broke
    }

    /// Forgets flows idle since before `now - IDLE_NS`.
    pub fn expire(&mut self, now: u64) {
        self.flows.retain(|_, f| now.saturating_sub(f.last_seen) < IDLE_NS);
    }
}

fn feed(
    flow: &mut Flow,
    to_server: bool,
    seg: &Segment<'_>,
    ts: u64,
    out: &mut Vec<Exchange>,
) -> Result<(), Undecodable> {
    let mut result = Ok(());
    let Flow {
        decoder,
        to_server: up,
        to_client: down,
        ..
    } = flow;
    let stream = if to_server { up } else { down };
    stream.push(seg.seq, seg.syn, seg.payload, |bytes| {
        if result.is_err() {
            return;
        }
        result = match (&mut *decoder, to_server) {
            (Decoder::Http(h), true) => h.client_data(bytes, ts),
            (Decoder::Http(h), false) => h.server_data(bytes, ts, out),
            (Decoder::Mysql(m), true) => m.client_data(bytes, ts),
            (Decoder::Mysql(m), false) => m.server_data(bytes, ts, out),
        };
    })?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn seg<'a>(to_server: bool, seq: u32, payload: &'a [u8]) -> Segment<'a> {
        let (c, s) = (addr("10.0.0.1:40000"), addr("10.0.0.2:8080"));
        let (src, dst) = if to_server { (c, s) } else { (s, c) };
        Segment {
            src,
            dst,
            seq,
            syn: false,
            fin: false,
            rst: false,
            payload,
        }
    }

    fn tracker() -> FlowTracker {
        FlowTracker::new([(8080, Protocol::Http)].into())
    }

    #[test]
    fn reordered_and_retransmitted_segments_decode_once() {
        let mut t = tracker();
        let mut out = Vec::new();
        let mut syn = seg(true, 999, b"");
        syn.syn = true;
        t.segment(&syn, 0, &mut out);
        let mut synack = seg(false, 4_294_967_000, b"");
        synack.syn = true;
        t.segment(&synack, 0, &mut out);
        let req = b"GET /a HTTP/1.1\r\n\r\n";
        t.segment(&seg(true, 1000 + 4, &req[4..]), MS, &mut out); // out of order
        t.segment(&seg(true, 1000, &req[..4]), 2 * MS, &mut out);
        t.segment(&seg(true, 1000, req), 3 * MS, &mut out); // retransmit
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        // The server's sequence wraps around 2^32 inside the response.
        t.segment(&seg(false, 4_294_967_001, res), 12 * MS, &mut out);
        t.segment(&seg(false, 4_294_967_001, res), 13 * MS, &mut out);
        let again = b"GET /b HTTP/1.1\r\n\r\n";
        t.segment(&seg(true, 1000 + req.len() as u32, again), 20 * MS, &mut out);
        let wrapped = 4_294_967_001u32.wrapping_add(res.len() as u32);
        t.segment(&seg(false, wrapped, res), 25 * MS, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|(p, _, e)| (*p, e.route.as_str(), e.latency_ns))
            .collect();
        assert_eq!(got, vec![(8080, "GET /a", 10 * MS), (8080, "GET /b", 5 * MS)]);
        assert!(t.counters.undecodable.is_empty());
    }

    #[test]
    fn a_hole_that_never_fills_marks_the_flow_undecodable() {
        let mut t = tracker();
        let mut out = Vec::new();
        t.segment(&seg(true, 0, b"GET /a HTTP/1.1\r\n"), 0, &mut out);
        for i in 0..=MAX_OUT_OF_ORDER as u32 {
            t.segment(&seg(true, 10_000 + i * 10, b"0123456789"), 1, &mut out);
        }
        assert_eq!(t.counters.undecodable.get("gap"), Some(&1));
        // Later segments of the flow are ignored, not counted again.
        t.segment(&seg(true, 50_000, b"x"), 2, &mut out);
        assert_eq!(t.counters.undecodable.get("gap"), Some(&1));
        assert!(out.is_empty());
    }

    #[test]
    fn a_connection_joined_mid_answer_is_counted_as_such_not_as_malformed() {
        let mut t = tracker();
        let mut out = Vec::new();
        // The plug-in started while a response was on its way: its tail comes first.
        let broke = t.segment(&seg(false, 500, b"tail of a body\r\n"), 0, &mut out);
        assert_eq!(broke, Some(Undecodable::MidStream));
        assert_eq!(t.counters.undecodable.get("midstream"), Some(&1));
        // An idle keep-alive connection joined before its next request decodes as usual.
        let mut t = tracker();
        t.segment(&seg(true, 7, b"GET /a HTTP/1.1\r\n\r\n"), 0, &mut out);
        t.segment(
            &seg(false, 9, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            1,
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn fin_on_both_sides_and_rst_forget_the_flow() {
        let mut t = tracker();
        let mut out = Vec::new();
        t.segment(&seg(true, 0, b"GET / HTTP/1.1\r\n\r\n"), 0, &mut out);
        assert_eq!(t.len(), 1);
        let mut fin = seg(true, 18, b"");
        fin.fin = true;
        t.segment(&fin, 1, &mut out);
        let mut fin2 = seg(false, 0, b"");
        fin2.fin = true;
        t.segment(&fin2, 2, &mut out);
        assert!(t.is_empty());
        t.segment(&seg(true, 0, b"GET / HTTP/1.1\r\n\r\n"), 3, &mut out);
        let mut rst = seg(false, 5, b"");
        rst.rst = true;
        t.segment(&rst, 4, &mut out);
        assert!(t.is_empty());
        t.segment(&seg(true, 0, b"x"), 5, &mut out);
        t.expire(5 + IDLE_NS);
        assert!(t.is_empty());
    }

    #[test]
    fn other_ports_are_ignored_and_ports_change_live() {
        let mut t = tracker();
        let mut out = Vec::new();
        let mut s = seg(true, 0, b"GET / HTTP/1.1\r\n\r\n");
        s.dst = addr("10.0.0.2:9999");
        t.segment(&s, 0, &mut out);
        assert!(t.is_empty());
        t.segment(&seg(true, 0, b"GET / HTTP/1.1\r\n\r\n"), 0, &mut out);
        t.set_ports(HashMap::new());
        assert!(t.is_empty());
    }

    proptest! {
        /// Any permutation of a stream's segments, with duplicates, decodes to the same
        /// exchanges as the stream in order, when the reorder bound holds.
        #[test]
        fn any_order_with_duplicates_gives_the_same_result(
            n in 1usize..6,
            cuts in prop::collection::vec(1usize..40, 1..12),
            order in prop::collection::vec(any::<prop::sample::Index>(), 1..30),
            isn in any::<u32>(),
        ) {
            let mut req = Vec::new();
            for i in 0..n { req.extend_from_slice(format!("GET /p/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()); }
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= req.len() { break; }
                let end = (at + c).min(req.len());
                pieces.push((at, end));
                at = end;
            }
            let mut sends: Vec<(usize, usize)> = order.iter().map(|i| pieces[i.index(pieces.len())]).collect();
            sends.extend(pieces.iter().copied()); // every byte arrives at least once
            let mut t = tracker();
            let mut out = Vec::new();
            let mut syn = seg(true, isn.wrapping_sub(1), b"");
            syn.syn = true;
            t.segment(&syn, 0, &mut out);
            for (a, b) in sends {
                t.segment(&seg(true, isn.wrapping_add(a as u32), &req[a..b]), 1, &mut out);
            }
            let res = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".repeat(n);
            t.segment(&seg(false, 7, &res), 2, &mut out);
            if t.counters.undecodable.is_empty() {
                prop_assert_eq!(out.len(), n);
                for (_, _, e) in &out { prop_assert_eq!(e.route.as_str(), "GET /p/{id}"); }
            }
        }

        #[test]
        fn random_segments_never_panic(segs in prop::collection::vec((any::<bool>(), any::<u32>(), any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)), 0..40)) {
            let mut t = FlowTracker::new([(8080, Protocol::Http), (3306, Protocol::Mysql)].into());
            let mut out = Vec::new();
            for (i, (up, seq, syn, fin, data)) in segs.iter().enumerate() {
                let mut s = seg(*up, *seq, data);
                if i % 2 == 1 { if *up { s.dst = addr("10.0.0.2:3306") } else { s.src = addr("10.0.0.2:3306") } }
                s.syn = *syn;
                s.fin = *fin;
                t.segment(&s, i as u64, &mut out);
            }
        }
    }
}
