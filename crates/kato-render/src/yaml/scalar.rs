//! YAML strings: plain when every reader (YAML 1.1 as kubectl and PyYAML read it, or 1.2) reads
//! the text back as the same string, else single-quoted, else double-quoted with escapes.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// Writes `s` as a YAML scalar.
#[inline]
pub(super) fn write_string(out: &mut String, s: &str) {
    // Most strings are names, paths, images and URLs: printable ASCII without spaces, led by a
    // letter or `/`. Those are plain unless they end in `:` or are a reserved word: with no space
    // inside, no `: ` or ` #` can start a value or a comment, and a letter or `/` first is neither
    // an indicator nor the start of a number.
    let b = s.as_bytes();
    let simple = b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/')
        && b.last() != Some(&b':')
        && b.iter().all(|&c| CLASS[usize::from(c)] & SIMPLE != 0);
    if simple && !is_reserved(b) {
        out.push_str(s);
    } else {
        write_checked(out, s);
    }
}

fn write_checked(out: &mut String, s: &str) {
    match style(s) {
        Style::Plain => out.push_str(s),
        Style::Single => {
            out.push('\'');
            let mut rest = s;
            while let Some(i) = rest.find('\'') {
                out.push_str(&rest[..=i]);
                out.push('\'');
                rest = &rest[i + 1..];
            }
            out.push_str(rest);
            out.push('\'');
        }
        Style::Double => write_double(out, s),
    }
}

const CTRL: u8 = 1;
const COLON: u8 = 2;
const HASH: u8 = 4;
const HIGH: u8 = 8;
const SIMPLE: u8 = 16;

/// What each byte may change about the style.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            0..=0x1f | 0x7f => CTRL,
            b':' => COLON | SIMPLE,
            b'#' => HASH | SIMPLE,
            0x80.. => HIGH,
            b' ' => 0,
            _ => SIMPLE,
        };
        i += 1;
    }
    t
};

fn style(s: &str) -> Style {
    let b = s.as_bytes();
    let flags = b.iter().fold(0u8, |f, &c| f | CLASS[usize::from(c)]) & !SIMPLE;
    if flags & CTRL != 0 || (flags & HIGH != 0 && s.chars().any(needs_escape)) {
        Style::Double
    } else if (flags & (COLON | HASH) == 0 || plain_inside(b)) && is_plain(b) {
        Style::Plain
    } else {
        Style::Single
    }
}

/// No `: `, trailing `:` or ` #`, which would start a mapping value or a comment.
fn plain_inside(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b':' => b.get(i + 1).is_some_and(|n| *n != b' '),
        b'#' => i == 0 || b[i - 1] != b' ',
        _ => true,
    })
}

/// Characters a single-quoted scalar cannot hold as they are: line breaks, tabs, and what YAML
/// does not count as printable.
fn needs_escape(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// Words YAML 1.1 or 1.2 reads as booleans, nulls, special floats or merge keys.
fn is_reserved(b: &[u8]) -> bool {
    let is = |w: &[u8]| b.eq_ignore_ascii_case(w);
    match b.len() {
        1 => matches!(b[0], b'~' | b'y' | b'Y' | b'n' | b'N' | b'=' | b'-'),
        2 => is(b"no") || is(b"on") || b == b"<<",
        3 => is(b"yes") || is(b"off"),
        4 => is(b"null") || is(b"true") || is(b".inf") || is(b".nan"),
        5 => is(b"false") || is(b"-.inf") || is(b"+.inf"),
        _ => false,
    }
}

/// The checks on the ends of the text and on reserved words; `style` checked the inside.
fn is_plain(b: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    let indicator = matches!(
        first,
        b'?' | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    );
    let dash_ok = first != b'-' || b.get(1).is_some_and(|c| *c != b' ');
    if indicator || !dash_ok || last == b' ' || b.starts_with(b"---") || b.starts_with(b"...") || looks_numeric(b) {
        return false;
    }
    !is_reserved(b)
}

/// Could YAML 1.1 read this as an int (any base, `_` groups, base 60), a float or a timestamp?
/// Such strings start with a digit, or a sign or dot before a digit or dot, and use only the
/// characters those forms use.
fn looks_numeric(b: &[u8]) -> bool {
    let starts = match b {
        [d, ..] if d.is_ascii_digit() => true,
        [b'+' | b'-' | b'.', d, ..] => d.is_ascii_digit() || *d == b'.',
        _ => false,
    };
    starts
        && b.iter().all(|c| {
            c.is_ascii_hexdigit()
                || matches!(
                    c,
                    b'x' | b'X' | b'o' | b'O' | b'_' | b'.' | b':' | b'+' | b'-' | b't' | b'T' | b'z' | b'Z' | b' '
                )
        })
}

fn write_double(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes an integer without going through `fmt`.
pub(super) fn write_int(out: &mut String, v: i128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    /// What a YAML reader gets back from `v: <written>`.
    fn read_back(s: &str) -> serde_yaml::Value {
        let doc = format!("v: {}\n", written(s));
        let map: std::collections::BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        map["v"].clone()
    }

    const TRICKY: &[&str] = &[
        "",
        " ",
        "a b",
        " lead",
        "trail ",
        "yes",
        "No",
        "ON",
        "off",
        "y",
        "N",
        "true",
        "False",
        "null",
        "~",
        "NULL",
        "8080",
        "0.1",
        "1e3",
        "0x1F",
        "0o17",
        "1_000",
        "12:30",
        "2001-12-14",
        "2001-12-14 21:59:43.10 -5",
        "+1",
        "-1",
        ".5",
        "-.5",
        ".inf",
        "-.Inf",
        ".NaN",
        "<<",
        "=",
        "-",
        "- x",
        "--port",
        "-c",
        "?",
        "? x",
        ":x",
        "a: b",
        "a:",
        "a:b",
        "a #b",
        "a#b",
        "#x",
        "&a",
        "*a",
        "!tag",
        "|",
        ">",
        "'q'",
        "\"d\"",
        "%x",
        "@x",
        "`x",
        "[a]",
        "{a}",
        ",",
        "---",
        "...",
        "--- x",
        "it's",
        "a\nb",
        "a\tb",
        "\r",
        "x\u{7f}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}x",
        "€uro",
        "日本語",
        "back\\slash",
        "$(KATO_DISCOVERY_TOKEN)",
        "${NOT_SET}",
        "http://kato:7070/v1/resources/shop/api/mesh?token=$(KATO_DISCOVERY_TOKEN)",
        "512Mi",
        "500m",
        "15s",
        "1234567890123456",
        "sha256:abc",
        "nginx -g 'daemon off;'",
        "_pod_name_|_pod_ip_",
    ];

    #[test]
    fn the_fast_path_agrees_with_the_full_check() {
        let more = [
            "a:",
            "a:b:",
            "/x:",
            "y",
            "yes",
            "No",
            "a'b",
            "a\"b",
            "a,b[c]{d}",
            "a#b",
            "x=1&y=$(Z)",
            "Ab%",
        ];
        for s in TRICKY.iter().chain(&more) {
            let mut full = String::new();
            write_checked(&mut full, s);
            assert_eq!(written(s), full, "{s:?}");
        }
    }

    #[test]
    fn integers() {
        for v in [0i128, 7, -7, 65301, i128::from(i64::MIN), i128::from(u64::MAX)] {
            let mut out = String::new();
            write_int(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn every_string_reads_back_as_itself() {
        for s in TRICKY {
            assert_eq!(
                read_back(s),
                serde_yaml::Value::String((*s).to_owned()),
                "{s:?} written as {}",
                written(s)
            );
        }
    }

    #[test]
    fn yaml_1_1_booleans_numbers_and_times_are_quoted() {
        // serde_yaml reads YAML 1.2, where these are strings anyway; Kubernetes tools read 1.1.
        for s in [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "12:30",
            "190:20:30",
            "2001-12-14",
            "0x1F",
            "1_000",
            "<<",
            "=",
        ] {
            assert_ne!(style(s), Style::Plain, "{s}");
        }
    }

    #[test]
    fn ordinary_strings_stay_plain() {
        for s in [
            "nginx:1.27",
            "512Mi",
            "500m",
            "db:5432",
            "/var/log/nginx",
            "--port",
            "app.kubernetes.io/name",
            "shop/api//data/logs",
            "$(KATO_DISCOVERY_TOKEN)",
            "http://kato.kato-system:7070/discovery/v1/shop/api/mesh",
            "dG9rLWxvZ3MtMDAwMQ==",
        ] {
            assert_eq!(written(s), s);
        }
        assert_eq!(written("8080"), "'8080'");
        assert_eq!(written("it's: x"), "'it''s: x'");
        assert_eq!(written("a\nb\u{7f}"), "\"a\\nb\\u007f\"");
    }
}
