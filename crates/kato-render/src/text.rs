//! The objects' strings, built without `format!`: a workload needs a few dozen names, URLs and
//! amounts, and the formatting machinery cost several times the copying.

/// The parts joined, in one allocation of the exact size.
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// An unsigned number in decimal, on the stack.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(n: impl Into<u64>) -> Self {
        let mut n = n.into();
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).expect("ASCII digits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_display() {
        for n in [0, 7, 10, 65301, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn concat_joins() {
        assert_eq!(concat(&["api", "-plugin-", "mesh"]), "api-plugin-mesh");
        assert_eq!(concat(&[]), "");
    }
}
