//! Where a Sentry SDK puts its key: the `X-Sentry-Auth` header
//! (`Sentry sentry_key=<key>, sentry_version=7, …`), the `sentry_key`
//! query parameter, or the DSN in the envelope header
//! (`https://<key>@host/<project>`); Sluice's own `X-API-Key` as well.
//! The key is a Sluice API key.

use http::HeaderMap;

/// `sentry_key` of an `X-Sentry-Auth` (or `Authorization: Sentry …`)
/// header value.
pub fn from_auth_header(value: &str) -> Option<&str> {
    let v = value.trim();
    let v = match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sentry ") => &v[7..],
        _ => v,
    };
    v.split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == "sentry_key")
        .map(|(_, val)| val.trim())
        .filter(|k| !k.is_empty())
}

/// The key from a request's headers or query, when it has one there.
pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = headers
        .get("x-sentry-auth")
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .filter(|v| v.as_bytes().starts_with(b"Sentry "))
        })
        .and_then(|v| v.to_str().ok())
        .and_then(from_auth_header);
    if let Some(k) = header {
        return Some(k.to_string());
    }
    let native = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if let Some(k) = native.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(k.to_string());
    }
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "sentry_key")
        .map(|(_, v)| v.to_string())
        .filter(|k| !k.is_empty())
}

/// The public key of a DSN: `scheme://<key>[:<secret>]@host/project`.
pub fn from_dsn(dsn: &str) -> Option<&str> {
    let (_, rest) = dsn.split_once("://")?;
    let (user, _) = rest.split_once('@')?;
    let key = user.split(':').next()?;
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_each_place() {
        assert_eq!(
            from_auth_header(
                "Sentry sentry_version=7, sentry_client=sentry.python/2.75.0, sentry_key=abc123"
            ),
            Some("abc123")
        );
        assert_eq!(from_auth_header("sentry_key=k,sentry_version=7"), Some("k"));
        assert_eq!(from_auth_header("Sentry sentry_version=7"), None);
        assert_eq!(from_auth_header("Sentry sentry_key="), None);

        let mut h = HeaderMap::new();
        assert_eq!(
            from_request(&h, Some("sentry_version=7&sentry_key=q1")),
            Some("q1".into())
        );
        assert_eq!(from_request(&h, Some("a=b")), None);
        assert_eq!(from_request(&h, None), None);
        h.insert("x-sentry-auth", "Sentry sentry_key=h1".parse().unwrap());
        assert_eq!(from_request(&h, Some("sentry_key=q1")), Some("h1".into()));

        assert_eq!(from_dsn("https://pub@sluice.example.com/42"), Some("pub"));
        assert_eq!(from_dsn("http://pub:secret@127.0.0.1:8080/1"), Some("pub"));
        assert_eq!(from_dsn("https://sluice.example.com/42"), None);
        assert_eq!(from_dsn("nonsense"), None);
    }
}
