//! Image references, checked against the grammar of the distribution project
//! (`[domain[:port]/]path[:tag][@algorithm:hex]`) without a regular expression.
//!
//! `oci_spec`'s own parser compiles a Unicode-aware regex on first use: about 5 MiB of automaton,
//! plus a lazy-DFA cache per thread that uses it, held for the life of the server, and tens of
//! milliseconds of start-up. The grammar is small, so it is checked here by hand and the result
//! handed to `oci_spec` through its plain constructors. Tags are ASCII (`[A-Za-z0-9_]` then
//! `[A-Za-z0-9_.-]`), as registries accept them; `oci_spec`'s regex would also let Unicode letters
//! through. A test compares both parsers on thousands of generated references.

use oci_spec::distribution::Reference;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a reference was refused, in the words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefError {
    Format,
    Tag,
    Digest,
    NameTooLong,
}

impl RefError {
    pub(crate) fn rule(self) -> &'static str {
        match self {
            Self::Format => {
                "write it as [registry/]repository[:tag][@sha256:digest] with a lowercase repository \
                 (e.g. `nginx:1.27`)"
            }
            Self::Tag => "a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            Self::Digest => "a digest must be sha256:<64 hex digits> (or sha384/sha512)",
            Self::NameTooLong => "the repository name is longer than 255 characters",
        }
    }
}

/// Parses `s` into a fully qualified reference, normalised the way `docker` does
/// (`nginx` → `docker.io/library/nginx:latest`).
pub(crate) fn parse(s: &str) -> Result<Reference, RefError> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if !is_name(name) {
        return Err(RefError::Format);
    }
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(RefError::Tag);
    }
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(RefError::NameTooLong);
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.to_owned(), digest.to_owned())
        }
        (Some(tag), None) => Reference::with_tag(registry, repository, tag.to_owned()),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.to_owned()),
        (None, None) => Reference::with_tag(registry, repository, "latest".to_owned()),
    })
}

/// `[domain/]component(/component)*`: the first part may be a domain when more follow.
fn is_name(name: &str) -> bool {
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or_default();
    let rest_ok = parts.clone().all(is_path_component);
    let has_more = parts.next().is_some();
    rest_ok && (is_path_component(first) || (has_more && is_domain(first)))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        // A separator between two alphanumeric runs.
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|x| *x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `label(.label)*[:port]`, labels of letters, digits and inner '-'.
fn is_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (d, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|x| x.is_ascii_digit()))
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    !b.is_empty() && b.len() <= 128 && word(&b[0]) && b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-')
}

fn check_digest(d: &str) -> Result<(), RefError> {
    let (algorithm, hex) = d.split_once(':').ok_or(RefError::Format)?;
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && part.bytes().all(|x| x.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|x| x.is_ascii_hexdigit()) {
        return Err(RefError::Format);
    }
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(RefError::Digest),
    };
    if hex.len() == expected {
        Ok(())
    } else {
        Err(RefError::Digest)
    }
}

/// The registry and repository of a name, as Docker normalises them.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => (left.to_owned(), right.to_owned()),
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB.to_owned();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the comparison covers the same cases on every run.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "b1",
        "nginx",
        "Web",
        "x",
        "0",
        ".",
        "..",
        "_",
        "__",
        "___",
        "-",
        "--",
        ":",
        "/",
        "@",
        "5000",
        "localhost",
        "registry.example.com",
        "sha256:",
        "latest",
        "1.27",
        "A",
        "-a",
        "a-",
        "docker.io",
        "index.docker.io",
        "my_app",
        "v1.0-rc.1",
        " ",
        "+",
        "sha512:",
        "SHA256:",
    ];

    fn hex(n: usize) -> String {
        "0123456789abcdef".chars().cycle().take(n).collect()
    }

    #[test]
    fn agrees_with_oci_spec_on_generated_references() {
        let mut rng = Lcg(7);
        let mut cases: Vec<String> = vec![
            "nginx".into(),
            "nginx:1.27".into(),
            "library/nginx".into(),
            "docker.io/nginx".into(),
            "index.docker.io/library/nginx:1".into(),
            "localhost/app".into(),
            "localhost:5000/team/app:v1".into(),
            "127.0.0.1:5000/kato-examples/logtail:1".into(),
            "host:5000".into(),
            format!("registry.example.com/a/b@sha256:{}", hex(64)),
            format!("a:tag@sha256:{}", hex(64)),
            format!("a@sha256:{}", hex(63)),
            format!("a@sha512:{}", hex(128)),
            format!("a@sha384:{}", hex(96)),
            format!("a@md5:{}", hex(32)),
            format!("a@sha256:{}", hex(64).to_uppercase()),
            "a".repeat(256),
            format!("example.com/{}", "a".repeat(255)),
            format!("x:{}", "t".repeat(128)),
            format!("x:{}", "t".repeat(129)),
            "a__b".into(),
            "a___b".into(),
            "a---b".into(),
            "a._b".into(),
            "UPPER/lower".into(),
            "lower/UPPER".into(),
            "a/b:".into(),
            ":tag".into(),
            "a@".into(),
        ];
        for _ in 0..20_000 {
            let n = 1 + rng.next(6);
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES[rng.next(PIECES.len())]);
            }
            if rng.next(4) == 0 {
                s.push_str(&format!("@sha256:{}", hex(64)));
            }
            cases.push(s);
        }
        let mut accepted = 0;
        for s in &cases {
            let ours = parse(s).ok();
            let theirs = Reference::try_from(s.as_str()).ok();
            assert_eq!(ours, theirs, "`{s}`");
            accepted += usize::from(ours.is_some());
        }
        // The generator must exercise both outcomes, or the comparison proves little.
        assert!(
            accepted > 1_000 && accepted < cases.len() - 1_000,
            "{accepted} of {}",
            cases.len()
        );
    }

    #[test]
    fn errors_say_which_part_is_wrong() {
        assert_eq!(parse("nginx:-bad"), Err(RefError::Tag));
        assert_eq!(parse(&format!("nginx@sha256:{}", hex(40))), Err(RefError::Digest));
        assert_eq!(parse("Nginx"), Err(RefError::Format));
        let r = parse("nginx").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("docker.io", "library/nginx", Some("latest"))
        );
    }
}
