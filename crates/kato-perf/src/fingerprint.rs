//! SQL statement fingerprints: the label of a MySQL query. Literals become `?`, `IN (…)` lists
//! collapse to `in (?+)`, whitespace and comments go, keywords are lowercased, so every run of
//! one statement shape counts as one fingerprint whatever its values.

/// Longest fingerprint kept.
const MAX_LEN: usize = 256;

/// Words that are lowercased; other identifiers keep their case (MySQL table names may be
/// case-sensitive).
const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "like",
    "between",
    "insert",
    "into",
    "values",
    "value",
    "update",
    "set",
    "delete",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "cross",
    "on",
    "as",
    "order",
    "by",
    "group",
    "having",
    "limit",
    "offset",
    "asc",
    "desc",
    "distinct",
    "union",
    "all",
    "exists",
    "case",
    "when",
    "then",
    "else",
    "end",
    "begin",
    "commit",
    "rollback",
    "start",
    "transaction",
    "create",
    "table",
    "drop",
    "alter",
    "index",
    "replace",
    "show",
    "use",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "for",
    "lock",
    "share",
    "mode",
    "ignore",
    "duplicate",
    "key",
    "with",
    "sleep",
    "call",
    "explain",
    "describe",
    "truncate",
    "true",
    "false",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Literal,
    Punct(char),
    /// `?` placeholder list, made by collapsing `( ?, ?, … )` after `in`.
    List,
}

/// The fingerprint of one statement's text.
pub fn fingerprint(sql: &str) -> String {
    let tokens = collapse_lists(tokenize(sql));
    let mut out = String::new();
    let mut prev: Option<&Token> = None;
    for t in &tokens {
        let piece: std::borrow::Cow<'_, str> = match t {
            Token::Word(w) => w.as_str().into(),
            Token::Literal => "?".into(),
            Token::List => "(?+)".into(),
            Token::Punct(c) => c.to_string().into(),
        };
        let glue = !matches!(
            (prev, t),
            (None, _)
                | (_, Token::Punct(',' | ')' | '.'))
                | (Some(Token::Punct('(' | '.')), _)
                | (Some(Token::Word(_)), Token::Punct('('))
        );
        if glue {
            out.push(' ');
        }
        out.push_str(&piece);
        if out.len() > MAX_LEN {
            let mut cut = MAX_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
        prev = Some(t);
    }
    out
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '-' if chars.get(i + 1) == Some(&'-') => i = skip_until(&chars, i, "\n"),
            '#' => i = skip_until(&chars, i, "\n"),
            '/' if chars.get(i + 1) == Some(&'*') => i = skip_until(&chars, i + 2, "*/"),
            '\'' | '"' => {
                i = skip_string(&chars, i, c);
                tokens.push(Token::Literal);
            }
            '`' => {
                let end = skip_string(&chars, i, '`');
                tokens.push(Token::Word(chars[i..end].iter().collect()));
                i = end;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit) && starts_value(&tokens)) =>
            {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token::Literal);
            }
            '?' => {
                tokens.push(Token::Literal);
                i += 1;
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '@' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '@')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                match lower.as_str() {
                    "null" | "true" | "false" => tokens.push(Token::Literal),
                    _ if KEYWORDS.contains(&lower.as_str()) => tokens.push(Token::Word(lower)),
                    _ => tokens.push(Token::Word(word)),
                }
            }
            ';' => i += 1,
            c => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    tokens
}

/// Whether a `-` here is a sign (after an operator, a comma, `(` or at the start) rather than a
/// minus between two operands.
fn starts_value(tokens: &[Token]) -> bool {
    !matches!(tokens.last(), Some(Token::Word(_) | Token::Literal | Token::Punct(')')))
        || matches!(tokens.last(), Some(Token::Word(w)) if KEYWORDS.contains(&w.as_str()))
}

fn skip_until(chars: &[char], from: usize, end: &str) -> usize {
    let end: Vec<char> = end.chars().collect();
    let mut i = from;
    while i < chars.len() {
        if chars[i..].starts_with(&end) {
            return i + end.len();
        }
        i += 1;
    }
    chars.len()
}

fn skip_string(chars: &[char], from: usize, quote: char) -> usize {
    let mut i = from + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            c if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// `in ( ?, ?, ? )` → `in (?+)`; also `values (?, ?), (?, ?)` → `values (?+)`.
fn collapse_lists(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let after_list_word = matches!(out.last(), Some(Token::Word(w)) if w == "in" || w == "values" || w == "value")
            || (matches!(out.last(), Some(Token::Punct(','))) && matches!(out.iter().rev().nth(1), Some(Token::List)));
        if after_list_word
            && tokens[i] == Token::Punct('(')
            && let Some(end) = literal_list_end(&tokens, i)
        {
            if matches!(out.last(), Some(Token::Punct(','))) {
                out.pop(); // `(…), (…)`: one list stands for all rows
            } else {
                out.push(Token::List);
            }
            i = end + 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// The index of the `)` closing a `(` that holds only literals and commas.
fn literal_list_end(tokens: &[Token], open: usize) -> Option<usize> {
    let mut j = open + 1;
    let mut any = false;
    while j < tokens.len() {
        match &tokens[j] {
            Token::Literal => any = true,
            Token::Punct(',') => {}
            Token::Punct(')') if any => return Some(j),
            _ => return None,
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use proptest::prelude::*;

    #[test]
    fn literals_lists_whitespace_and_case() {
        assert_eq!(
            fingerprint("SELECT * FROM users WHERE id = 42 AND name = 'bob'"),
            "select * from users where id = ? and name = ?"
        );
        assert_eq!(
            fingerprint("select  name\n from users where id IN (1, 2,3)"),
            "select name from users where id in (?+)"
        );
        assert_eq!(fingerprint("SELECT SLEEP(0.05)"), "select sleep(?)");
        assert_eq!(
            fingerprint("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y');"),
            "insert into t(a, b) values (?+)"
        );
        assert_eq!(
            fingerprint("select a from t where x = -5 and y = \"it''s\" -- c\n limit 10"),
            "select a from t where x = ? and y = ? limit ?"
        );
        assert_eq!(fingerprint("select /* hint */ 1"), "select ?");
        assert_eq!(
            fingerprint("UPDATE `Orders` SET n = n - 1 WHERE id = 7"),
            "update `Orders` set n = n - ? where id = ?"
        );
        assert_eq!(fingerprint("select a.b from t a"), "select a.b from t a");
    }

    #[test]
    fn one_shape_one_fingerprint() {
        assert_eq!(
            fingerprint("select * from t where id in (1,2)"),
            fingerprint("SELECT * FROM t WHERE id IN (9, 8, 7, 6)")
        );
    }

    proptest! {
        #[test]
        fn any_text_gives_a_bounded_fingerprint(s in "\\PC{0,600}") {
            let f = fingerprint(&s);
            prop_assert!(f.len() <= super::MAX_LEN + 4);
        }

        #[test]
        fn numbers_and_strings_never_leak(n in any::<i64>(), s in "[a-z]{1,20}") {
            let f = fingerprint(&format!("select * from t where a = {n} and b = '{s}'"));
            prop_assert_eq!(f, "select * from t where a = ? and b = ?");
        }
    }
}
