//! Finding a request's one credential.
//!
//! Stateless. A request may name itself in exactly one way:
//! - `X-API-Key: <key>`;
//! - `Authorization: Bearer <token>`;
//! - on a WebSocket upgrade only (browsers cannot set headers there):
//!   `?apiKey=<key>` or `?token=<token>`.
//!
//! Anything else is refused, never guessed: two credentials (even equal
//! ones), a repeated header, a header that is not visible ASCII, another
//! `Authorization` scheme, or a query credential on a plain HTTP request
//! (where it would leak into logs and browser history, and would let a
//! cross-site form post without a preflight).

use hyper::header::{HeaderMap, AUTHORIZATION};

use crate::request::Query;

/// A credential as presented, borrowed from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key.
    ApiKey(&'a str),
    /// A JWT.
    Token(&'a str),
}

/// Why a request's credentials were refused before being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// More than one credential.
    #[error("more than one credential: send exactly one of X-API-Key, Authorization: Bearer, apiKey or token")]
    Ambiguous,
    /// A credential header that cannot be read.
    #[error("the {0} header is not a valid credential")]
    InvalidHeader(&'static str),
    /// `apiKey` or `token` in the query of a plain HTTP request.
    #[error("the {0} query parameter is accepted only on WebSocket upgrades; send it in a header")]
    QueryOnHttp(&'static str),
}

/// The request's credential, if it has one. `upgrade` says whether the
/// request is a WebSocket upgrade (the only place query credentials count).
pub fn extract<'a>(
    headers: &'a HeaderMap,
    query: &'a Query,
    upgrade: bool,
) -> Result<Option<Credential<'a>>, CredentialError> {
    let mut found = None;
    let mut add = |credential: Credential<'a>| {
        if found.replace(credential).is_some() {
            return Err(CredentialError::Ambiguous);
        }
        Ok(())
    };
    if let Some(key) = single_header(headers, "x-api-key", "X-API-Key")? {
        add(Credential::ApiKey(key))?;
    }
    if let Some(value) = single_header(headers, AUTHORIZATION.as_str(), "Authorization")? {
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(CredentialError::InvalidHeader("Authorization"))?;
        add(Credential::Token(token))?;
    }
    for (value, name, make) in [
        (
            &query.api_key,
            "apiKey",
            Credential::ApiKey as fn(&'a str) -> Credential<'a>,
        ),
        (&query.token, "token", Credential::Token),
    ] {
        if let Some(value) = value {
            if !upgrade {
                return Err(CredentialError::QueryOnHttp(name));
            }
            add(make(value))?;
        }
    }
    Ok(found)
}

fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<&'a str>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CredentialError::Ambiguous);
    }
    match value.to_str() {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim())),
        _ => Err(CredentialError::InvalidHeader(display)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn query(api_key: Option<&str>, token: Option<&str>) -> Query {
        Query {
            api_key: api_key.map(Into::into),
            token: token.map(Into::into),
            ..Query::default()
        }
    }

    #[test]
    fn exactly_one_credential_is_found() {
        let none = Query::default();
        let h = headers(&[("x-api-key", b"k1")]);
        assert_eq!(
            extract(&h, &none, false),
            Ok(Some(Credential::ApiKey("k1")))
        );
        let h = headers(&[("authorization", b"Bearer a.b.c")]);
        assert_eq!(
            extract(&h, &none, false),
            Ok(Some(Credential::Token("a.b.c")))
        );
        let q = query(Some("k2"), None);
        assert_eq!(
            extract(&HeaderMap::new(), &q, true),
            Ok(Some(Credential::ApiKey("k2")))
        );
        let q = query(None, Some("t"));
        assert_eq!(
            extract(&HeaderMap::new(), &q, true),
            Ok(Some(Credential::Token("t")))
        );
        assert_eq!(extract(&HeaderMap::new(), &none, true), Ok(None));
    }

    #[test]
    fn two_credentials_or_unreadable_ones_are_refused() {
        let q = query(Some("k2"), None);
        let h = headers(&[("x-api-key", b"k2")]);
        assert_eq!(extract(&h, &q, true), Err(CredentialError::Ambiguous));
        let h = headers(&[("x-api-key", b"k1"), ("x-api-key", b"k2")]);
        assert_eq!(
            extract(&h, &Query::default(), true),
            Err(CredentialError::Ambiguous)
        );
        let h = headers(&[("x-api-key", b"k1"), ("authorization", b"Bearer t")]);
        assert_eq!(
            extract(&h, &Query::default(), true),
            Err(CredentialError::Ambiguous)
        );
        let h = headers(&[("x-api-key", b"caf\xc3\xa9")]);
        assert_eq!(
            extract(&h, &q, true),
            Err(CredentialError::InvalidHeader("X-API-Key")),
            "a non-ASCII header never falls back to the query key"
        );
        let h = headers(&[("authorization", b"Basic dXNlcjpwYXNz")]);
        assert_eq!(
            extract(&h, &Query::default(), false),
            Err(CredentialError::InvalidHeader("Authorization"))
        );
        assert_eq!(
            extract(&HeaderMap::new(), &query(None, Some("t")), false),
            Err(CredentialError::QueryOnHttp("token"))
        );
        assert_eq!(
            extract(&HeaderMap::new(), &query(Some("k"), None), false),
            Err(CredentialError::QueryOnHttp("apiKey"))
        );
    }
}
