//! Why an image could not be resolved, in words that say what to do, and how registry answers map to it.

use std::fmt;
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciError, OciErrorCode};

use crate::registry::is_loopback_registry;
use crate::retry::Attempt;

/// A failed resolution. `image` is the reference as the user wrote it; `registry` is its registry
/// host (`docker.io` for `nginx`). No variant ever holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "image `{image}` was not found in its registry: check the repository and tag \
         (the registry answered `{detail}`)"
    )]
    NotFound { image: String, detail: String },
    #[error("{}", unauthorized(.image, .registry, .credentials_given))]
    Unauthorized {
        image: String,
        registry: String,
        /// Whether Kato sent credentials (then they were refused) or had none for this registry.
        credentials_given: bool,
    },
    #[error("registry `{registry}` is unreachable: {detail}: check the registry address and that it is running")]
    Unreachable { registry: String, detail: String },
    #[error(
        "registry `{registry}` did not answer within {}: check that it is up and reachable from the \
         Kato server",
        Human(*.after)
    )]
    Timeout { registry: String, after: Duration },
    #[error(
        "image reference `{image}` was refused by its registry ({detail}): write it as \
         [registry/]repository[:tag][@sha256:digest]"
    )]
    InvalidReference { image: String, detail: String },
    #[error("the registry of image `{image}` failed to answer: {detail}: retry later, or check the registry")]
    Registry { image: String, detail: String },
}

impl ResolveError {
    /// A stable machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::NotFound { .. } => "image_not_found",
            ResolveError::Unauthorized { .. } => "registry_unauthorized",
            ResolveError::Unreachable { .. } => "registry_unreachable",
            ResolveError::Timeout { .. } => "registry_timeout",
            ResolveError::InvalidReference { .. } => "invalid_image",
            ResolveError::Registry { .. } => "registry_error",
        }
    }
}

fn unauthorized(image: &str, registry: &str, credentials_given: &bool) -> String {
    if *credentials_given {
        format!(
            "registry `{registry}` refused the credentials Kato has for it when reading image `{image}`: \
             check the username and password configured for registry `{registry}`, and that they may pull \
             this repository"
        )
    } else {
        format!(
            "registry `{registry}` needs credentials to read image `{image}` (or the repository does not \
             exist there): give the Kato server a username and password for registry `{registry}`"
        )
    }
}

/// `10 s`, `300 ms`.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 && self.0.as_secs() > 0 {
            write!(f, "{} s", self.0.as_secs())
        } else {
            write!(f, "{} ms", self.0.as_millis())
        }
    }
}

/// One resolution's context, used to turn what the client reported into a [`ResolveError`].
pub(crate) struct Call<'a> {
    pub image: &'a str,
    pub registry: &'a str,
    pub credentials_given: bool,
    pub timeout: Duration,
}

impl Call<'_> {
    pub(crate) fn error(&self, err: OciDistributionError) -> ResolveError {
        use OciDistributionError as E;
        match err {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => self.unauthorized(),
            E::RegistryError { envelope, .. } => match envelope.errors.first() {
                Some(first) => self.by_code(first),
                None => self.registry("an error with no details".to_owned()),
            },
            E::ImageManifestNotFoundError(detail) => self.not_found(detail),
            E::ServerError { code, message, .. } => self.by_status(code, &message),
            E::RequestError(e) => self.by_transport(&e),
            E::DigestError(e) => self.registry(format!("it served a manifest whose digest does not match ({e})")),
            other => self.registry(other.to_string()),
        }
    }

    /// The error as a failed attempt: transient (worth another attempt) for connections refused,
    /// reset or timed out and for HTTP 429, 502, 503 and 504; final for everything else.
    pub(crate) fn attempt(&self, err: OciDistributionError) -> Attempt<ResolveError> {
        let transient = transient(&err).map(|why| self.unreachable(&why));
        Attempt {
            error: self.error(err),
            transient,
        }
    }

    /// An attempt that got no answer within the timeout: worth another.
    pub(crate) fn attempt_timed_out(&self) -> Attempt<ResolveError> {
        Attempt {
            error: self.timed_out(),
            transient: Some(self.unreachable(&format!("no answer within {}", Human(self.timeout)))),
        }
    }

    /// What a retry line says failed.
    fn unreachable(&self, why: &str) -> String {
        format!("registry `{}` unreachable ({why})", self.registry)
    }

    pub(crate) fn timed_out(&self) -> ResolveError {
        ResolveError::Timeout {
            registry: self.registry.to_owned(),
            after: self.timeout,
        }
    }

    fn by_code(&self, error: &OciError) -> ResolveError {
        let detail = if error.message.is_empty() {
            format!("{:?}", error.code)
        } else {
            error.message.clone()
        };
        use OciErrorCode as C;
        match error.code {
            C::ManifestUnknown | C::NameUnknown | C::NotFound | C::BlobUnknown => self.not_found(detail),
            C::Unauthorized | C::Denied => self.unauthorized(),
            C::NameInvalid | C::TagInvalid | C::DigestInvalid => ResolveError::InvalidReference {
                image: self.image.to_owned(),
                detail,
            },
            _ => self.registry(detail),
        }
    }

    fn by_status(&self, code: u16, message: &str) -> ResolveError {
        let message: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let message: String = message.chars().take(200).collect();
        let detail = if message.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {message}")
        };
        match code {
            404 => self.not_found(detail),
            401 | 403 => self.unauthorized(),
            429 => self.registry(format!("too many requests ({detail})")),
            _ => self.registry(detail),
        }
    }

    fn by_transport(&self, e: &reqwest::Error) -> ResolveError {
        if e.is_timeout() {
            return self.timed_out();
        }
        // A status turned into an error by the client: the registry answered.
        if let Some(status) = e.status() {
            return self.by_status(status.as_u16(), status.canonical_reason().unwrap_or(""));
        }
        ResolveError::Unreachable {
            registry: self.registry.to_owned(),
            detail: transport_detail(e, !is_loopback_registry(self.registry)),
        }
    }

    fn not_found(&self, detail: String) -> ResolveError {
        ResolveError::NotFound {
            image: self.image.to_owned(),
            detail,
        }
    }

    fn unauthorized(&self) -> ResolveError {
        ResolveError::Unauthorized {
            image: self.image.to_owned(),
            registry: self.registry.to_owned(),
            credentials_given: self.credentials_given,
        }
    }

    fn registry(&self, detail: String) -> ResolveError {
        ResolveError::Registry {
            image: self.image.to_owned(),
            detail,
        }
    }
}

/// Why another attempt may succeed, in a few words; None when it cannot.
fn transient(err: &OciDistributionError) -> Option<String> {
    use OciDistributionError as E;
    match err {
        E::ServerError { code, .. } => transient_status(*code),
        E::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests)
            .then(|| "too many requests".to_owned()),
        E::RequestError(e) => {
            if e.is_timeout() {
                return Some("timed out".to_owned());
            }
            if let Some(status) = e.status() {
                return transient_status(status.as_u16());
            }
            transient_transport(e)
        }
        _ => None,
    }
}

fn transient_status(code: u16) -> Option<String> {
    let words = match code {
        429 => "too many requests",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => return None,
    };
    Some(format!("HTTP {code} {words}"))
}

/// A refused, reset, aborted or timed-out connection somewhere in the error's causes.
fn transient_transport(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use std::io::ErrorKind as K;
    let mut current = e.source();
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted => {
                    io_words(io.kind()).map(str::to_owned)
                }
                K::TimedOut => Some("timed out".to_owned()),
                K::BrokenPipe | K::UnexpectedEof => Some("the connection was closed".to_owned()),
                _ => None,
            };
        }
        // hyper's own words for a connection the server closed mid-answer.
        if cause.to_string().contains("connection closed before message completed") {
            return Some("the connection was closed".to_owned());
        }
        current = cause.source();
    }
    None
}

/// The root cause of a transport failure in a few words (`connection refused`), without the URL.
/// `https` says whether the call went over TLS, to explain a failed handshake as such.
fn transport_detail(e: &(dyn std::error::Error + 'static), https: bool) -> String {
    let mut deepest = e.to_string();
    let mut tls = false;
    let mut current = e.source();
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(words) = io_words(io.kind()) {
                return words.to_owned();
            }
            // The TLS layer reports handshake and certificate failures as invalid data.
            tls |= https && io.kind() == std::io::ErrorKind::InvalidData;
        }
        deepest = cause.to_string();
        current = cause.source();
    }
    if tls {
        format!(
            "the HTTPS handshake failed ({deepest}); registries other than loopback ones are reached over \
             HTTPS only, with a certificate the server trusts"
        )
    } else {
        deepest
    }
}

fn io_words(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match kind {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "the connection was reset",
        K::ConnectionAborted => "the connection was aborted",
        K::HostUnreachable => "no route to host",
        K::NetworkUnreachable => "the network is unreachable",
        K::AddrNotAvailable => "the address is not available",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(credentials_given: bool) -> Call<'static> {
        Call {
            image: "127.0.0.1:5000/t/app:1",
            registry: "127.0.0.1:5000",
            credentials_given,
            timeout: Duration::from_secs(10),
        }
    }

    fn envelope(json: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str(json).unwrap(),
            url: "http://127.0.0.1:5000/v2/t/app/manifests/1".into(),
        }
    }

    #[test]
    fn registry_error_codes_map_to_what_the_user_can_fix() {
        let unknown = envelope(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#);
        assert_eq!(
            call(false).error(unknown).to_string(),
            "image `127.0.0.1:5000/t/app:1` was not found in its registry: check the repository and tag \
             (the registry answered `manifest unknown`)"
        );
        let denied =
            envelope(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#);
        assert!(matches!(
            call(true).error(denied),
            ResolveError::Unauthorized {
                credentials_given: true,
                ..
            }
        ));
        let invalid = envelope(r#"{"errors":[{"code":"NAME_INVALID"}]}"#);
        let err = call(false).error(invalid);
        assert!(matches!(err, ResolveError::InvalidReference { .. }), "{err}");
        let odd = envelope(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#);
        assert!(matches!(call(false).error(odd), ResolveError::Registry { .. }));
    }

    #[test]
    fn http_statuses_without_an_envelope() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://x/v2/".into(),
            message: "<html>\n  Bad   Gateway\n</html>".into(),
        };
        let err = call(false).error(server(502));
        assert_eq!(err, call(false).registry("HTTP 502: <html> Bad Gateway </html>".into()));
        assert!(matches!(call(false).error(server(404)), ResolveError::NotFound { .. }));
        assert!(matches!(
            call(false).error(server(403)),
            ResolveError::Unauthorized { .. }
        ));
    }

    /// An error with a cause, the way reqwest wraps hyper's and the TLS layer's errors.
    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn transport_failures_are_told_in_a_few_words() {
        use std::io::{Error, ErrorKind};
        let refused = Wrapped(
            "error sending request for url (http://127.0.0.1:9/v2/)",
            ErrorKind::ConnectionRefused.into(),
        );
        assert_eq!(transport_detail(&refused, false), "connection refused");
        let dns = Wrapped(
            "client error (Connect)",
            Error::other("failed to lookup address information"),
        );
        assert_eq!(transport_detail(&dns, true), "failed to lookup address information");
        let tls = || {
            Wrapped(
                "client error (Connect)",
                Error::new(ErrorKind::InvalidData, "invalid peer certificate: UnknownIssuer"),
            )
        };
        let over_https = transport_detail(&tls(), true);
        assert!(
            over_https.starts_with("the HTTPS handshake failed (invalid peer certificate: UnknownIssuer); registries"),
            "{over_https}"
        );
        assert_eq!(
            transport_detail(&tls(), false),
            "invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn messages_are_distinct_and_say_what_to_do() {
        let none = call(false).unauthorized().to_string();
        let refused = call(true).unauthorized().to_string();
        assert!(
            none.contains("needs credentials") && none.contains("give the Kato server"),
            "{none}"
        );
        assert!(
            refused.contains("refused the credentials") && refused.contains("check the username"),
            "{refused}"
        );
        assert_eq!(
            call(false).timed_out().to_string(),
            "registry `127.0.0.1:5000` did not answer within 10 s: check that it is up and reachable from the \
             Kato server"
        );
        let short = Call {
            timeout: Duration::from_millis(300),
            ..call(false)
        };
        assert!(short.timed_out().to_string().contains("within 300 ms"));
    }
}
