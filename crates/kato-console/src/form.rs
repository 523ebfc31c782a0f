//! Forms as posted: `application/x-www-form-urlencoded` pairs in order, repeated names kept
//! (a multi-select sends one pair per option). Field names are the API's field paths
//! (`config_groups[0].items[1].name`), so that the API's error lands next to the field it names.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The pairs of a posted form.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `name`'s value, trimmed, or `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// A checkbox: present (with any value but `false`) means on.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v != "false")
    }

    /// The pairs whose name starts with `prefix`, with the prefix cut off.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.0
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }
}

/// A posted form, up to 1 MiB.
pub struct Form(pub Fields);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.len() > 1 << 20 {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than 1 MiB").into_response());
        }
        let pairs = form_urlencoded_pairs(&bytes);
        Ok(Form(Fields(pairs)))
    }
}

fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_in_order_with_repeats() {
        let f = Fields(form_urlencoded_pairs(b"a=1&b=x+y&a=%C3%A9&c&d=%zz&e=%4"));
        assert_eq!(f.all("a"), ["1", "é"]);
        assert_eq!(f.get("b"), Some("x y"));
        assert_eq!(f.get("c"), Some(""));
        assert_eq!(f.get("d"), Some("%zz"));
    }
}
