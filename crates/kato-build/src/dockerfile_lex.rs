//! A Dockerfile's syntax as the builder reads it: parser directives, instructions across
//! continuation lines, words, quotes and `$VAR` substitution. Where Kato cannot know a
//! variable's value, the word says so rather than guess.

/// A word after substitution: its text, or the text known up to the first unknown variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Word {
    Known(String),
    Unknown {
        known: String,
        var: String,
        written: String,
    },
}

/// The escape character: `\`, or what a leading `# escape=` parser directive sets.
pub(crate) fn escape_char(text: &str) -> char {
    for line in text.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        match directive.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("escape") => {
                return if value.trim() == "`" { '`' } else { '\\' };
            }
            Some((key, _)) if key.trim().chars().all(|c| c.is_ascii_alphanumeric()) => continue,
            _ => break,
        }
    }
    '\\'
}

/// The Dockerfile's instructions with the line each starts on: comment and empty lines
/// dropped, lines ending with the escape character joined with the next.
pub(crate) fn instructions(text: &str, escape: char) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        // As the builder does, also inside a continuation.
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let (n, mut joined) = current.take().unwrap_or((i + 1, String::new()));
        let body = line.trim_end();
        match body.strip_suffix(escape) {
            Some(head) => {
                joined.push_str(head);
                current = Some((n, joined));
            }
            None => {
                joined.push_str(line);
                if !joined.trim().is_empty() {
                    out.push((n, joined));
                }
            }
        }
    }
    if let Some(last) = current.filter(|(_, s)| !s.trim().is_empty()) {
        out.push(last);
    }
    out
}

/// Splits on whitespace outside quotes; quotes and escapes are kept for [`expand`].
pub(crate) fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            (c, None) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (c, None) if c == escape => {
                word.push(c);
                word.extend(chars.next());
            }
            ('\'' | '"', None) => {
                quote = Some(c);
                word.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                word.push(c);
            }
            (c, Some('"')) if c == escape => {
                word.push(c);
                word.extend(chars.next());
            }
            (c, _) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Substitutes `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}` and
/// `${NAME+word}`, removing quotes and escapes as the builder does. `value` answers `None` for
/// a variable whose value is unknown; any other form of `${…}` is unknown too.
pub(crate) fn expand(word: &str, escape: char, value: &dyn Fn(&str) -> Option<String>) -> Word {
    let mut out = Expansion::default();
    let chars: Vec<char> = word.chars().collect();
    expand_into(&chars, escape, value, &mut out);
    match out.unknown {
        None => Word::Known(out.text),
        Some((known, var)) => Word::Unknown {
            known,
            var,
            written: word.to_owned(),
        },
    }
}

#[derive(Default)]
struct Expansion {
    text: String,
    /// The text known before the first unknown variable, and its name.
    unknown: Option<(String, String)>,
}

impl Expansion {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn unknown(&mut self, var: &str) {
        if self.unknown.is_none() {
            self.unknown = Some((self.text.clone(), var.to_owned()));
        }
    }
}

fn expand_into(chars: &[char], escape: char, value: &dyn Fn(&str) -> Option<String>, out: &mut Expansion) {
    let mut i = 0;
    let mut in_double = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' if !in_double => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|x| *x == '\'')
                    .map_or(chars.len(), |p| i + 1 + p);
                out.push(&chars[i + 1..end].iter().collect::<String>());
                i = end + 1;
            }
            '"' => {
                in_double = !in_double;
                i += 1;
            }
            c if c == escape => {
                if let Some(next) = chars.get(i + 1) {
                    if in_double && !matches!(next, '"' | '$') && *next != escape {
                        out.push(&c.to_string());
                    }
                    out.push(&next.to_string());
                }
                i += 2;
            }
            '$' => i = dollar(chars, i, escape, value, out),
            c => {
                out.push(&c.to_string());
                i += 1;
            }
        }
    }
}

/// Expands the `$…` at `chars[at]`; answers the index after it.
fn dollar(
    chars: &[char],
    at: usize,
    escape: char,
    value: &dyn Fn(&str) -> Option<String>,
    out: &mut Expansion,
) -> usize {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if chars.get(at + 1) != Some(&'{') {
        let len = chars[at + 1..].iter().take_while(|c| is_name(c)).count();
        if len == 0 {
            out.push("$");
            return at + 1;
        }
        let name: String = chars[at + 1..at + 1 + len].iter().collect();
        match value(&name) {
            Some(v) => out.push(&v),
            None => out.unknown(&name),
        }
        return at + 1 + len;
    }
    // `${…}`, with nested braces in its word.
    let mut depth = 0;
    let mut end = chars.len();
    for (j, c) in chars.iter().enumerate().skip(at + 1) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &chars[(at + 2).min(end)..end];
    let name_len = inner.iter().take_while(|c| is_name(c)).count();
    let name: String = inner[..name_len].iter().collect();
    let modifier: String = inner[name_len..].iter().take(2).collect();
    let current = value(&name);
    let (op, word_at) = match modifier.as_str() {
        m if m.starts_with(":-") || m.starts_with(":+") => (m[..2].to_owned(), name_len + 2),
        m if m.starts_with('-') || m.starts_with('+') => (m[..1].to_owned(), name_len + 1),
        _ if name_len == inner.len() && !name.is_empty() => (String::new(), name_len),
        _ => ("?".to_owned(), name_len),
    };
    let word = &inner[word_at.min(inner.len())..];
    match (op.as_str(), current) {
        ("", Some(v)) => out.push(&v),
        (":-" | "-", Some(v)) if !v.is_empty() || op == "-" => out.push(&v),
        (":-" | "-", Some(_)) => expand_into(word, escape, value, out),
        (":+" | "+", Some(v)) if !v.is_empty() || op == "+" => expand_into(word, escape, value, out),
        (":+" | "+", Some(_)) => {}
        _ => out.unknown(if name.is_empty() { "?" } else { &name }),
    }
    end + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(word: &str, vars: &[(&str, &str)]) -> Word {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        expand(word, '\\', &|n| vars.get(n).cloned())
    }

    #[test]
    fn words_are_substituted_and_unquoted_as_the_builder_does() {
        let k = |t: &str| Word::Known(t.to_owned());
        assert_eq!(known("'$A'\"$A\"${A}x", &[("A", "1")]), k("$A11x"));
        assert_eq!(
            known("${A:-d}/${A:+p}/${C:-d}/${C-e}/${C:+p}", &[("A", "1"), ("C", "")]),
            k("1/p/d//")
        );
        assert_eq!(known("a\\$b", &[]), k("a$b"));
        let Word::Unknown { known: prefix, var, .. } = known("host/${T}/x", &[]) else {
            panic!("T is unknown")
        };
        assert_eq!((prefix.as_str(), var.as_str()), ("host/", "T"));
    }

    #[test]
    fn instructions_span_continuations_and_skip_comments() {
        let text = "# escape=`\nFROM a\nRUN x `\n\n# c\n  y\nCOPY b c\n";
        assert_eq!(escape_char(text), '`');
        let got = instructions(text, '`');
        assert_eq!(
            got,
            vec![
                (2, "FROM a".to_owned()),
                (3, "RUN x   y".to_owned()),
                (7, "COPY b c".to_owned())
            ]
        );
        assert_eq!(split_words("--from=\"a b\" c", '\\'), vec!["--from=\"a b\"", "c"]);
    }
}
