//! The classic BPF program attached to the capture socket: copies only TCP packets to or from
//! the analysed ports reach the plug-in, and on `lo` each packet once (the kernel shows a
//! loopback packet twice: going out and coming in; the outgoing copy is dropped). The socket is
//! `SOCK_DGRAM`, so offset 0 is the IP header whatever the link type.

use socket2::SockFilter;

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// Linux's ancillary loads: `SKF_AD_OFF + SKF_AD_PKTTYPE` and `+ SKF_AD_IFINDEX`.
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
const AD_IFINDEX: u32 = 0xffff_f000 + 8;
const PACKET_OUTGOING: u32 = 4;
/// `lo` is interface 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;
/// Bytes of each packet kept: all of it.
const SNAP: u32 = 0x0004_0000;
/// Ports beyond this many make one program too long for 8-bit jumps: every TCP packet is
/// taken then, and the flow tracker keeps those of the analysed ports.
pub const MAX_FILTERED_PORTS: usize = 50;

#[derive(Debug, Clone, Copy)]
enum To {
    Next,
    At(&'static str),
    Accept,
    Reject,
}

enum Ins {
    Stmt(u16, u32),
    Jump(u16, u32, To, To),
    Label(&'static str),
}

/// The program for `tcp port P1 or P2 …`; no port: nothing passes.
pub fn program(ports: &[u16]) -> Vec<SockFilter> {
    use Ins::*;
    use To::*;
    let all_tcp = ports.len() > MAX_FILTERED_PORTS;
    let port_checks = |out: &mut Vec<Ins>| {
        if all_tcp {
            out.push(Stmt(RET_K, SNAP));
            return;
        }
        for p in ports {
            out.push(Jump(JEQ_K, u32::from(*p), Accept, Next));
        }
    };
    let mut ins = vec![
        Stmt(LD_W_ABS, AD_PKTTYPE),
        Jump(JEQ_K, PACKET_OUTGOING, Next, At("ip")),
        Stmt(LD_W_ABS, AD_IFINDEX),
        Jump(JEQ_K, LOOPBACK_IFINDEX, Reject, Next),
        Label("ip"),
        Stmt(LD_B_ABS, 0),
        Stmt(AND_K, 0xf0),
        Jump(JEQ_K, 0x40, Next, At("v6")),
        // IPv4: TCP, first fragment only, ports after the header (IHL × 4).
        Stmt(LD_B_ABS, 9),
        Jump(JEQ_K, 6, Next, Reject),
        Stmt(LD_H_ABS, 6),
        Jump(JSET_K, 0x1fff, Reject, Next),
        Stmt(LDX_B_MSH, 0),
        Stmt(LD_H_IND, 0),
    ];
    port_checks(&mut ins);
    ins.push(Stmt(LD_H_IND, 2));
    port_checks(&mut ins);
    ins.push(Stmt(RET_K, 0));
    // IPv6 without extension headers.
    ins.extend([
        Label("v6"),
        Jump(JEQ_K, 0x60, Next, Reject),
        Stmt(LD_B_ABS, 6),
        Jump(JEQ_K, 6, Next, Reject),
    ]);
    ins.push(Stmt(LD_H_ABS, 40));
    port_checks(&mut ins);
    ins.push(Stmt(LD_H_ABS, 42));
    port_checks(&mut ins);
    ins.extend([Label("reject"), Stmt(RET_K, 0), Label("accept"), Stmt(RET_K, SNAP)]);
    if ports.is_empty() {
        return vec![SockFilter::new(RET_K, 0, 0, 0)];
    }
    assemble(&ins)
}

fn assemble(ins: &[Ins]) -> Vec<SockFilter> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for i in ins {
        match i {
            Ins::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in ins {
        let here = out.len();
        let offset = |t: To| -> u8 {
            let target = match t {
                To::Next => here + 1,
                To::At(l) => at[l],
                To::Accept => at["accept"],
                To::Reject => at["reject"],
            };
            u8::try_from(target - here - 1).expect("jumps fit in 8 bits below MAX_FILTERED_PORTS")
        };
        match i {
            Ins::Label(_) => {}
            Ins::Stmt(code, k) => out.push(SockFilter::new(*code, 0, 0, *k)),
            Ins::Jump(code, k, t, f) => out.push(SockFilter::new(*code, offset(*t), offset(*f), *k)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_assemble_for_any_port_count() {
        for n in [0usize, 1, 2, 10, MAX_FILTERED_PORTS, MAX_FILTERED_PORTS + 1, 1000] {
            let ports: Vec<u16> = (0..n as u16).collect();
            let p = program(&ports);
            assert!(!p.is_empty() && p.len() < 1000, "{n}: {}", p.len());
        }
    }
}
