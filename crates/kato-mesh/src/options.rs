//! Reading one option of a discovery document: a JSON string (or number) turned into a typed
//! value, with the default when missing, and an error that names the option and the fix.

use serde_json::{Map, Value};

/// What is wrong with one option's value; the caller adds where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOption {
    pub option: &'static str,
    pub value: String,
    pub problem: String,
}

impl BadOption {
    fn new(option: &'static str, value: &str, problem: impl Into<String>) -> BadOption {
        BadOption {
            option,
            value: value.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The options of one document section (`base`, a port, a downstream).
pub struct Options<'a>(pub &'a Map<String, Value>);

impl<'a> Options<'a> {
    /// The raw text of an option, `None` when missing or empty (both mean "the default").
    pub fn text(&self, name: &'static str) -> Result<Option<String>, BadOption> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(BadOption::new(
                name,
                &other.to_string(),
                "is not a string; give the value as text",
            )),
        }
    }

    /// A whole number in `min..=max`.
    pub fn whole(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, BadOption> {
        let Some(text) = self.text(name)? else {
            return Ok(default);
        };
        let range = if max == u64::MAX {
            format!("give a number ≥ {min}")
        } else {
            format!("give a number from {min} to {max}")
        };
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            Ok(_) => Err(BadOption::new(name, &text, format!("is out of range; {range}"))),
            Err(_) => Err(BadOption::new(name, &text, format!("is not a whole number; {range}"))),
        }
    }

    /// A whole number where missing or empty means "no limit".
    pub fn optional_whole(&self, name: &'static str, min: u64, max: u64) -> Result<Option<u64>, BadOption> {
        match self.text(name)? {
            None => Ok(None),
            Some(_) => self.whole(name, 0, min, max).map(Some),
        }
    }

    /// `YES` or `NO` (case-insensitive; `true`/`false` accepted too).
    pub fn yes_no(&self, name: &'static str, default: bool) -> Result<bool, BadOption> {
        let Some(text) = self.text(name)? else {
            return Ok(default);
        };
        match text.to_ascii_uppercase().as_str() {
            "YES" | "TRUE" => Ok(true),
            "NO" | "FALSE" => Ok(false),
            _ => Err(BadOption::new(name, &text, "is neither YES nor NO; give YES or NO")),
        }
    }

    /// One of `choices` (case-insensitive), returned lower-cased.
    pub fn choice(&self, name: &'static str, default: &'static str, choices: &[&str]) -> Result<String, BadOption> {
        let Some(text) = self.text(name)? else {
            return Ok(default.to_owned());
        };
        let lower = text.to_ascii_lowercase();
        if choices.contains(&lower.as_str()) {
            Ok(lower)
        } else {
            Err(BadOption::new(
                name,
                &text,
                format!("is not one of the choices; give one of {}", choices.join(", ")),
            ))
        }
    }

    /// Any text, with a default.
    pub fn string(&self, name: &'static str, default: &str) -> Result<String, BadOption> {
        Ok(self.text(name)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A check on a parsed value that failed: a [`BadOption`] for `name`.
    pub fn bad(name: &'static str, value: &str, problem: impl Into<String>) -> BadOption {
        BadOption::new(name, value, problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn missing_and_empty_mean_default() {
        let m = opts(json!({"A": "", "B": null}));
        let o = Options(&m);
        assert_eq!(o.whole("A", 7, 1, 10).unwrap(), 7);
        assert_eq!(o.whole("B", 8, 1, 10).unwrap(), 8);
        assert_eq!(o.whole("C", 9, 1, 10).unwrap(), 9);
        assert_eq!(o.optional_whole("A", 1, 10).unwrap(), None);
    }

    #[test]
    fn numbers_as_strings_or_json_numbers() {
        let m = opts(json!({"A": " 5 ", "B": 6}));
        let o = Options(&m);
        assert_eq!(o.whole("A", 0, 1, 10).unwrap(), 5);
        assert_eq!(o.whole("B", 0, 1, 10).unwrap(), 6);
    }

    #[test]
    fn bad_numbers_name_the_fix() {
        let m = opts(json!({"A": "abc", "B": "0", "C": "-3", "D": "1.5"}));
        let o = Options(&m);
        let e = o.whole("A", 1, 1, u64::MAX).unwrap_err();
        assert_eq!(e.option, "A");
        assert_eq!(e.problem, "is not a whole number; give a number ≥ 1");
        let e = o.whole("B", 1, 1, 100).unwrap_err();
        assert_eq!(e.problem, "is out of range; give a number from 1 to 100");
        assert!(o.whole("C", 1, 0, 100).is_err());
        assert!(o.whole("D", 1, 0, 100).is_err());
    }

    #[test]
    fn yes_no_and_choices() {
        let m = opts(json!({"A": "yes", "B": "NO", "C": "maybe", "L": "DEBUG", "M": "loud"}));
        let o = Options(&m);
        assert!(o.yes_no("A", false).unwrap());
        assert!(!o.yes_no("B", true).unwrap());
        assert!(o.yes_no("X", true).unwrap());
        assert_eq!(
            o.yes_no("C", true).unwrap_err().problem,
            "is neither YES nor NO; give YES or NO"
        );
        assert_eq!(o.choice("L", "info", &["info", "debug"]).unwrap(), "debug");
        assert!(o.choice("M", "info", &["info", "debug"]).is_err());
    }

    #[test]
    fn objects_are_refused() {
        let m = opts(json!({"A": {"x": 1}}));
        assert!(Options(&m).text("A").is_err());
    }
}
