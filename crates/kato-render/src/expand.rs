//! The two expansions of env values: `${VAR}` and `${VAR:default}` in plug-in variable values,
//! expanded at render time; and Kubernetes' dependent variables, `$(VAR)`.
//!
//! `${VAR}`'s syntax is Rainbond's: a defined variable (even an empty one) gives its value; an
//! undefined one gives the default when there is one, else the reference stays as written. `$$`
//! and `$(X)` are left alone: they belong to the kubelet's own expansion (`$$` is its escape, so
//! `$${X}` reaches the container as a literal `${X}`). Expansion is one pass: substituted text is
//! not expanded again, so references cannot loop.
//!
//! `$(VAR)` is what the kubelet does when a container starts ([`expand_dependent_into`]); Kato
//! does it too where the kubelet would copy a secret into a plain value (the renderer then puts
//! the result in the Secret) and on podman, which has no such expansion.

/// Expands `${VAR}` and `${VAR:default}` in `value`, looking variables up with `env`.
pub fn expand_vars(value: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    expand_into(value, &mut out, |name, out| match env(name) {
        Some(v) => {
            out.push_str(&v);
            true
        }
        None => false,
    });
    out
}

/// The allocation-free core: `lookup` appends the value of a defined variable to `out` and says
/// whether it was defined.
pub(crate) fn expand_into(value: &str, out: &mut String, mut lookup: impl FnMut(&str, &mut String) -> bool) {
    let b = value.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'$') {
        let at = i + off;
        match b.get(at + 1) {
            Some(b'$') => i = at + 2,
            Some(b'{') => match parse_reference(value, at + 2) {
                Some((name, default, end)) => {
                    out.push_str(&value[copied..at]);
                    if !lookup(name, out) {
                        out.push_str(default.unwrap_or(&value[at..end]));
                    }
                    copied = end;
                    i = end;
                }
                None => i = at + 1,
            },
            _ => i = at + 1,
        }
    }
    out.push_str(&value[copied..]);
}

/// Kubernetes' expansion of dependent variables, byte for byte as the kubelet does it
/// (`third_party/forked/golang/expansion`): `$$` becomes `$`; `$(NAME)`, up to the first `)`,
/// becomes what `lookup` appends when it says the variable is defined, else stays as written;
/// any other `$` stays. Substituted text is not expanded again.
pub fn expand_dependent_into(value: &str, out: &mut String, mut lookup: impl FnMut(&str, &mut String) -> bool) {
    let b = value.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'$') {
        let at = i + off;
        match b.get(at + 1) {
            None => break,
            Some(b'$') => {
                out.push_str(&value[copied..=at]);
                copied = at + 2;
                i = at + 2;
            }
            Some(b'(') => match b[at + 2..].iter().position(|&c| c == b')') {
                Some(len) => {
                    let end = at + 3 + len;
                    out.push_str(&value[copied..at]);
                    if !lookup(&value[at + 2..end - 1], out) {
                        out.push_str(&value[at..end]);
                    }
                    copied = end;
                    i = end;
                }
                // An unclosed `$(` stays, and so does what follows it.
                None => i = at + 2,
            },
            // `$x` stays as written, `x` included (so `$$` cannot pair across it).
            Some(_) => i = at + 2,
        }
    }
    out.push_str(&value[copied..]);
}

/// Parses `NAME}` or `NAME:default}` starting at `start`: the name, the default and the index
/// just past the closing brace.
fn parse_reference(value: &str, start: usize) -> Option<(&str, Option<&str>, usize)> {
    let b = value.as_bytes();
    let first = *b.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let name_end = start
        + b[start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))?;
    let name = &value[start..name_end];
    match b[name_end] {
        b'}' => Some((name, None, name_end + 1)),
        b':' => {
            let close = name_end + 1 + b[name_end + 1..].iter().position(|&c| c == b'}')?;
            Some((name, Some(&value[name_end + 1..close]), close + 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db".into()),
            "PORT" => Some("5432".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn x(s: &str) -> String {
        expand_vars(s, &env)
    }

    #[test]
    fn known_variables_expand() {
        assert_eq!(x("${HOST}:${PORT}"), "db:5432");
        assert_eq!(x("jdbc://${HOST}/x"), "jdbc://db/x");
        assert_eq!(x("${HOST}${HOST}"), "dbdb");
    }

    #[test]
    fn defaults_apply_only_to_undefined_variables() {
        assert_eq!(x("${MISSING:fallback}"), "fallback");
        assert_eq!(x("${HOST:fallback}"), "db");
        assert_eq!(
            x("[${EMPTY:fallback}]"),
            "[]",
            "a defined empty variable is not replaced"
        );
        assert_eq!(x("[${MISSING:}]"), "[]");
        assert_eq!(
            x("${MISSING:a:b}"),
            "a:b",
            "the default runs to the first closing brace"
        );
        assert_eq!(x("${MISSING:${HOST}}"), "${HOST}", "a default is not expanded again");
    }

    #[test]
    fn unknown_variables_without_default_stay_as_written() {
        assert_eq!(x("${MISSING}"), "${MISSING}");
        assert_eq!(x("a ${MISSING} ${HOST}"), "a ${MISSING} db");
    }

    #[test]
    fn other_dollar_forms_are_untouched() {
        for s in [
            "$HOST", "$(HOST)", "$$", "$${HOST}", "$", "x$", "${", "${HOST", "${1A}", "${A-B}", "${}", "${HOST:x",
        ] {
            assert_eq!(x(s), s);
        }
        assert_eq!(x("$$$${HOST}"), "$$$${HOST}");
        assert_eq!(x("$$${HOST}"), "$$db", "`$$` pairs first, as the kubelet reads them");
        assert_eq!(x("€${HOST}€"), "€db€");
    }

    fn k8s(s: &str) -> String {
        let mut out = String::new();
        expand_dependent_into(s, &mut out, |name, out| match env(name) {
            Some(v) => {
                out.push_str(&v);
                true
            }
            None => false,
        });
        out
    }

    #[test]
    fn dependent_variables_expand_like_the_kubelet() {
        // Cases of Kubernetes' own expansion tests.
        for (input, want) in [
            ("$(HOST):$(PORT)", "db:5432"),
            ("$(EMPTY)x", "x"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(HOST)", "$(HOST)"),
            ("$$$(HOST)", "$db"),
            ("$$$$(HOST)", "$$(HOST)"),
            ("$(HOST", "$(HOST"),
            ("$()", "$()"),
            ("$HOST", "$HOST"),
            ("$", "$"),
            ("x$", "x$"),
            ("$x$(HOST)", "$xdb"),
            ("${HOST}", "${HOST}"),
            ("$(MISSING$(HOST))", "$(MISSING$(HOST))"),
            ("€$(HOST)€", "€db€"),
        ] {
            assert_eq!(k8s(input), want, "{input}");
        }
    }

    #[test]
    fn substituted_text_is_not_expanded_again() {
        let loopy = |n: &str| (n == "A").then(|| "${A}".to_string());
        assert_eq!(expand_vars("${A}", &loopy), "${A}");
    }
}
