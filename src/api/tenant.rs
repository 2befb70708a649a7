//! Whom a call is for: its tenant, which goes into `Options.tenant` on every scoring path. The
//! scheduler fills batches fairly between the tenants of one priority and holds each to the
//! model's `tenant_max_queue_pairs`; the per-tenant metrics count it when it is listed.
//!
//! With data-plane keys (`--api-keys-file`) the tenant is the name of the key the call
//! presented, and the `x-crossrank-tenant` header is ignored: a client must not pick another
//! tenant's share. Without keys it is that header (gRPC metadata or HTTP header), "" when it is
//! absent.

use super::keys::KeyMatch;
use crate::engine::request::MAX_TENANT_BYTES;
use crate::engine::ServeError;

/// The header (gRPC metadata) that names the tenant when no keys are configured.
pub const TENANT_HEADER: &str = "x-crossrank-tenant";

/// A call's tenant ("" for none), as the transports hand it to the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant(pub String);

impl Tenant {
    /// The tenant of a call that presented `key` (None when keys are off) and sent `header`
    /// as [`TENANT_HEADER`]. A header that is not printable ASCII, or longer than
    /// [`MAX_TENANT_BYTES`], is refused (INVALID_ARGUMENT, HTTP 400), unless keys are on.
    pub fn of_call(key: Option<&KeyMatch>, header: Option<&[u8]>) -> Result<Self, ServeError> {
        match (key, header) {
            (Some(k), _) => Ok(Self(k.name.to_string())),
            (None, None) => Ok(Self::default()),
            (None, Some(value)) => from_header(value),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn from_header(value: &[u8]) -> Result<Tenant, ServeError> {
    if value.len() > MAX_TENANT_BYTES {
        return Err(ServeError::Invalid(format!(
            "header `{TENANT_HEADER}` is {} bytes; the limit is {MAX_TENANT_BYTES}",
            value.len()
        )));
    }
    if let Some(col) = value
        .iter()
        .position(|&b| !(b == b' ' || b.is_ascii_graphic()))
    {
        return Err(ServeError::Invalid(format!(
            "header `{TENANT_HEADER}` has a control or non-ASCII byte at byte {} of {}; a \
             tenant is printable ASCII, at most {MAX_TENANT_BYTES} bytes",
            col + 1,
            value.len()
        )));
    }
    Ok(Tenant(String::from_utf8_lossy(value).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::keys::KeyIndex;

    #[test]
    fn the_key_name_wins_over_the_header() {
        let key = KeyMatch {
            index: KeyIndex(3),
            name: Arc::from("team-a"),
        };
        let tenant = |k, h| Tenant::of_call(k, h).map(|t| t.0);
        assert_eq!(
            tenant(Some(&key), Some(&b"team-b"[..])),
            Ok("team-a".into())
        );
        let long = [b'x'; MAX_TENANT_BYTES + 1];
        assert_eq!(tenant(Some(&key), Some(&long[..])), Ok("team-a".into()));
        assert_eq!(tenant(None, Some(&b"team b.1"[..])), Ok("team b.1".into()));
        assert_eq!(tenant(None, None), Ok(String::new()));
        assert_eq!(tenant(None, Some(&b""[..])), Ok(String::new()));
        let max = [b'x'; MAX_TENANT_BYTES];
        assert_eq!(
            tenant(None, Some(&max[..])).unwrap().len(),
            MAX_TENANT_BYTES
        );
    }

    #[test]
    fn a_bad_header_is_refused_naming_it_its_length_and_the_limit() {
        let long = [b'x'; 200];
        let e = Tenant::of_call(None, Some(&long)).unwrap_err();
        assert_eq!(
            e,
            ServeError::Invalid(
                "header `x-crossrank-tenant` is 200 bytes; the limit is 128".into()
            )
        );
        let e = Tenant::of_call(None, Some("tëam".as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`x-crossrank-tenant` has a control or non-ASCII byte at byte 2 of 5"),
            "{e}"
        );
    }
}
