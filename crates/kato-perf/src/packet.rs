//! From a captured IP packet (the link header already removed) to a TCP segment.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::flow::Segment;

/// The TCP segment in an IPv4 or IPv6 packet; none for anything else (or a broken packet).
pub fn tcp_segment(ip: &[u8]) -> Option<Segment<'_>> {
    let packet = SlicedPacket::from_ip(ip).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match packet.net? {
        NetSlice::Ipv4(v4) => (v4.header().source_addr().into(), v4.header().destination_addr().into()),
        NetSlice::Ipv6(v6) => (v6.header().source_addr().into(), v6.header().destination_addr().into()),
        NetSlice::Arp(_) => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    Some(Segment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: tcp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 8080, 1234, 65535)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ipv4_and_ipv6_tcp_segments_are_read() {
        let p = v4(b"hello");
        let s = tcp_segment(&p).unwrap();
        assert_eq!(s.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "10.0.0.2:8080".parse().unwrap());
        assert_eq!((s.seq, s.syn, s.fin, s.payload), (1234, true, false, &b"hello"[..]));
        let b = PacketBuilder::ipv6([0; 16], [1; 16], 64).tcp(1, 2, 3, 100).fin();
        let mut out = Vec::new();
        b.write(&mut out, b"x").unwrap();
        let s = tcp_segment(&out).unwrap();
        assert!(s.fin && s.src.is_ipv6());
        let udp = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 1).udp(1, 2);
        let mut out = Vec::new();
        udp.write(&mut out, b"x").unwrap();
        assert!(tcp_segment(&out).is_none());
    }

    #[test]
    fn truncated_packets_are_refused_not_misread() {
        let p = v4(b"hello world");
        for cut in 0..p.len() {
            if let Some(s) = tcp_segment(&p[..cut]) {
                // The IP total length says more: etherparse refuses rather than cut.
                panic!("{cut}: {s:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = tcp_segment(&bytes);
        }

        #[test]
        fn corrupted_packets_never_panic(payload in prop::collection::vec(any::<u8>(), 0..100), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut p = v4(&payload);
            let i = at.index(p.len());
            p[i] = byte;
            let _ = tcp_segment(&p);
        }
    }
}
