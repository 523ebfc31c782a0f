//! Path templates: the route label of an HTTP request. Ids, UUIDs and hashes in a path become
//! `{id}`, `{uuid}` and `{hash}` and the query is dropped, so `/users/42?x=1` and `/users/43`
//! count as one route and the number of routes stays bounded by the app's shape, not its data.

/// Longest template kept; longer paths are cut (at a segment boundary when possible).
const MAX_LEN: usize = 128;
/// Segments kept; deeper paths end in `/…`.
const MAX_SEGMENTS: usize = 8;

/// The template of a request target (`/a/b?c`, or an absolute URI `http://h/a/b`).
pub fn path_template(target: &str) -> String {
    let path = strip_authority(target);
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || !path.starts_with('/') {
        // `*` (OPTIONS) or garbage: one bucket.
        return if path == "*" { "*".to_owned() } else { "/".to_owned() };
    }
    let mut out = String::with_capacity(path.len().min(MAX_LEN));
    for (n, segment) in path.split('/').skip(1).enumerate() {
        if n == MAX_SEGMENTS {
            out.push_str("/…");
            break;
        }
        out.push('/');
        out.push_str(classify(segment).unwrap_or(segment));
        if out.len() > MAX_LEN {
            let mut cut = MAX_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

fn strip_authority(target: &str) -> &str {
    match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    }
}

/// The placeholder a segment collapses to, if it is data rather than a name.
fn classify(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return None;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some("{id}");
    }
    if is_uuid(bytes) {
        return Some("{uuid}");
    }
    if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return Some("{hash}");
    }
    // Numbers with a sign, a decimal part or a short hex-like id with digits (`v1` stays).
    if bytes.len() >= 8
        && bytes.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
        && bytes.iter().filter(|b| b.is_ascii_digit()).count() >= 4
    {
        return Some("{hash}");
    }
    None
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::path_template;
    use proptest::prelude::*;

    #[test]
    fn ids_uuids_and_hashes_collapse_and_the_query_goes() {
        assert_eq!(path_template("/users/42?x=1"), "/users/{id}");
        assert_eq!(path_template("/users/43"), "/users/{id}");
        assert_eq!(
            path_template("/o/123e4567-e89b-12d3-a456-426614174000/items"),
            "/o/{uuid}/items"
        );
        assert_eq!(path_template("/blob/d41d8cd98f00b204e9800998ecf8427e"), "/blob/{hash}");
        assert_eq!(path_template("/api/v1/teams"), "/api/v1/teams");
        assert_eq!(path_template("/"), "/");
        assert_eq!(path_template("http://example.com/a/7?q"), "/a/{id}");
        assert_eq!(path_template("*"), "*");
        assert_eq!(path_template("garbage"), "/");
        assert_eq!(path_template("/fast"), "/fast");
    }

    #[test]
    fn deep_and_long_paths_are_bounded() {
        assert_eq!(path_template("/a/b/c/d/e/f/g/h/i/j"), "/a/b/c/d/e/f/g/h/…");
        let long = format!("/{}", "x".repeat(1000));
        assert!(path_template(&long).len() <= super::MAX_LEN + 4);
    }

    proptest! {
        #[test]
        fn any_target_gives_a_bounded_template(s in ".{0,400}") {
            let t = path_template(&s);
            prop_assert!(t.len() <= super::MAX_LEN + 8);
            prop_assert!(!t.contains('?'));
        }

        #[test]
        fn numeric_segments_never_leak(n in any::<u64>()) {
            prop_assert_eq!(path_template(&format!("/x/{n}")), "/x/{id}");
        }
    }
}
