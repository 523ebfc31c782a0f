//! MySQL client/server protocol decoding of one connection. A client packet with sequence id 0
//! starts a command; the server's next packet (sequence id 1) is its answer: OK (`0x00`), ERR
//! (`0xff`) or the first packet of a result set. `COM_QUERY` text becomes a fingerprint; other
//! commands are matched but not recorded. The handshake and result-set rows are skipped.

use crate::exchange::{Exchange, Undecodable};
use crate::fingerprint::fingerprint;

const COM_QUERY: u8 = 0x03;
/// Query text kept for the fingerprint; the rest of a long statement is skipped.
const MAX_QUERY: usize = 4096;

#[derive(Debug, Default)]
struct Packets {
    /// The header (4 bytes) and up to `MAX_QUERY` bytes of the packet being read.
    buf: Vec<u8>,
    /// Payload bytes of the current packet still to come (after the header).
    remaining: usize,
    /// When this packet's first byte arrived.
    first_byte: u64,
    in_packet: bool,
}

/// A complete packet: sequence id, the start of its payload and when its first byte arrived.
struct Packet {
    seq: u8,
    payload: Vec<u8>,
    first_byte: u64,
}

impl Packets {
    fn feed(&mut self, mut data: &[u8], ts: u64, mut each: impl FnMut(Packet)) {
        while !data.is_empty() {
            if !self.in_packet {
                if self.buf.is_empty() {
                    self.first_byte = ts;
                }
                let need = 4 - self.buf.len();
                let take = need.min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() < 4 {
                    return;
                }
                self.remaining =
                    usize::from(self.buf[0]) | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]) << 16;
                self.in_packet = true;
            }
            let take = self.remaining.min(data.len());
            let keep = (4 + MAX_QUERY).saturating_sub(self.buf.len()).min(take);
            self.buf.extend_from_slice(&data[..keep]);
            self.remaining -= take;
            data = &data[take..];
            if self.remaining == 0 {
                let seq = self.buf[3];
                let payload = self.buf.split_off(4);
                self.buf.clear();
                self.in_packet = false;
                each(Packet {
                    seq,
                    payload,
                    first_byte: self.first_byte,
                });
            }
        }
    }
}

#[derive(Debug)]
struct Command {
    /// The fingerprint, for `COM_QUERY`; other commands are not recorded.
    route: Option<String>,
    last_byte: u64,
}

/// The decoder of one MySQL connection.
#[derive(Debug, Default)]
pub struct MysqlConn {
    client: Packets,
    server: Packets,
    command: Option<Command>,
}

impl MysqlConn {
    /// Bytes from the client, in order, that arrived at `ts` (ns).
    pub fn client_data(&mut self, data: &[u8], ts: u64) -> Result<(), Undecodable> {
        let mut started = None;
        self.client.feed(data, ts, |p| {
            if p.seq == 0 && !p.payload.is_empty() {
                let route = (p.payload[0] == COM_QUERY).then(|| fingerprint(&String::from_utf8_lossy(&p.payload[1..])));
                started = Some(Command { route, last_byte: ts });
            }
        });
        if let Some(c) = started {
            self.command = Some(c);
        }
        Ok(())
    }

    /// Bytes from the server, in order, that arrived at `ts` (ns); answered queries go to `out`.
    pub fn server_data(&mut self, data: &[u8], ts: u64, out: &mut Vec<Exchange>) -> Result<(), Undecodable> {
        let command = &mut self.command;
        let mut bad = false;
        self.server.feed(data, ts, |p| {
            if p.seq != 1 {
                return;
            }
            let Some(c) = command.take() else {
                return;
            };
            let Some(first) = p.payload.first() else {
                bad = true;
                return;
            };
            if let Some(route) = c.route {
                out.push(Exchange {
                    route,
                    status: None,
                    error: *first == 0xff,
                    latency_ns: p.first_byte.saturating_sub(c.last_byte),
                });
            }
        });
        if bad { Err(Undecodable::Malformed) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    pub(crate) fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        p.extend_from_slice(payload);
        p
    }

    fn query(sql: &str) -> Vec<u8> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        packet(0, &p)
    }

    #[test]
    fn handshake_is_skipped_and_queries_are_fingerprinted() {
        let mut c = MysqlConn::default();
        let mut out = Vec::new();
        c.server_data(&packet(0, b"\x0a8.0.0\0greeting"), 0, &mut out).unwrap();
        c.client_data(&packet(1, b"login response"), MS).unwrap();
        c.server_data(&packet(2, &[0, 0, 0, 2, 0, 0, 0]), 2 * MS, &mut out)
            .unwrap();
        assert!(out.is_empty());

        c.client_data(&query("SELECT * FROM t WHERE id = 5"), 10 * MS).unwrap();
        let mut rs = packet(1, &[1]);
        rs.extend(packet(2, b"column def"));
        rs.extend(packet(3, &[0xfe, 0, 0, 2, 0]));
        rs.extend(packet(4, b"\x01a"));
        c.server_data(&rs, 14 * MS, &mut out).unwrap();

        c.client_data(&query("select * from nope"), 20 * MS).unwrap();
        c.server_data(
            &packet(1, b"\xff\x7a\x04#42S02Table 'nope' doesn't exist"),
            21 * MS,
            &mut out,
        )
        .unwrap();

        c.client_data(&packet(0, &[0x0e]), 30 * MS).unwrap(); // COM_PING: matched, not recorded
        c.server_data(&packet(1, &[0, 0, 0, 2, 0, 0, 0]), 31 * MS, &mut out)
            .unwrap();

        assert_eq!(
            out,
            vec![
                Exchange {
                    route: "select * from t where id = ?".into(),
                    status: None,
                    error: false,
                    latency_ns: 4 * MS
                },
                Exchange {
                    route: "select * from nope".into(),
                    status: None,
                    error: true,
                    latency_ns: MS
                },
            ]
        );
    }

    #[test]
    fn packets_split_anywhere_give_the_same_answer() {
        let q = query("select sleep(0.05)");
        let a = packet(1, &[0, 0, 0, 2, 0, 0, 0]);
        for cut in 0..q.len() {
            let mut c = MysqlConn::default();
            let mut out = Vec::new();
            c.client_data(&q[..cut], 1).unwrap();
            c.client_data(&q[cut..], 2).unwrap();
            for (i, b) in a.iter().enumerate() {
                c.server_data(&[*b], 10 + i as u64, &mut out).unwrap();
            }
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].latency_ns, 8, "the first byte of the answer counts");
            assert_eq!(out[0].route, "select sleep(?)");
        }
    }

    #[test]
    fn long_statements_are_cut_not_buffered() {
        let sql = format!("select '{}'", "x".repeat(100_000));
        let mut c = MysqlConn::default();
        c.client_data(&query(&sql), 1).unwrap();
        assert!(c.client.buf.capacity() < 2 * (4 + MAX_QUERY) + 100_000);
        let mut out = Vec::new();
        c.server_data(&packet(1, &[0]), 2, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)), 0..20)) {
            let mut c = MysqlConn::default();
            let mut out = Vec::new();
            for (i, (client, data)) in chunks.iter().enumerate() {
                let r = if *client { c.client_data(data, i as u64) } else { c.server_data(data, i as u64, &mut out) };
                if r.is_err() { break; }
            }
        }
    }
}
