//! The publisher's view (`page.admin_token`): with the token, the page and the API also list the
//! entries that are not published (queued, being hashed, failed, with why). The token is given
//! once as `/?token=…` (answered with a cookie and a redirect that drops it from the address
//! bar and history), or as `Authorization: Bearer …` by API clients.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::WebState;

/// The cookie that carries the publisher's view.
pub const COOKIE: &str = "bitseed_admin";

/// How long the cookie lasts: a month.
const COOKIE_DAYS: i64 = 30;

/// The configured token, kept as its SHA-256: every candidate is hashed and the digests compared
/// in constant time, so neither the comparison's time nor the token's length says anything.
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `candidate` is the token.
    pub fn matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        same(&d, &self.digest)
    }

    /// The cookie's value: a digest of the token rather than the token itself, so the cookie
    /// (in a browser profile, a proxy's log) does not give the token away.
    fn cookie_value(&self) -> String {
        hex::encode(Sha256::digest(self.digest))
    }

    fn matches_cookie(&self, value: &str) -> bool {
        let want = Sha256::digest(self.digest);
        match hex::decode(value) {
            Ok(got) if got.len() == 32 => same(&got, &want),
            _ => false,
        }
    }
}

/// Equal byte strings of the same length, compared without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Whether the request comes with the publisher's token: the cookie, or a bearer header.
pub fn is_admin(state: &WebState, req: &HttpRequest) -> bool {
    let Some(token) = &state.admin else {
        return false;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token.matches(t.trim()));
    bearer
        || req
            .cookie(COOKIE)
            .is_some_and(|c| token.matches_cookie(c.value()))
}

/// The page's answer to `?token=…` and `?logout`, if the request has either: the cookie set (or
/// cleared) and a redirect to the same page without them; a wrong token is a 403.
pub fn sign_in_or_out(state: &WebState, req: &HttpRequest) -> Option<HttpResponse> {
    let mut token = None;
    let mut logout = false;
    let mut rest = Vec::new();
    for (k, v) in url_pairs(req.query_string()) {
        match k.as_str() {
            "token" => token = Some(v),
            "logout" => logout = true,
            _ => rest.push(format!(
                "{}={}",
                super::api::query_encode(&k),
                super::api::query_encode(&v)
            )),
        }
    }
    if token.is_none() && !logout {
        return None;
    }
    let secure = state.base_url(req).starts_with("https://");
    let cookie = |value: String, max_age| {
        Cookie::build(COOKIE, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure)
            .max_age(max_age)
            .finish()
    };
    let set = if logout {
        cookie(String::new(), actix_web::cookie::time::Duration::ZERO)
    } else {
        let wanted = token.unwrap_or_default();
        match &state.admin {
            Some(t) if t.matches(&wanted) => cookie(
                t.cookie_value(),
                actix_web::cookie::time::Duration::days(COOKIE_DAYS),
            ),
            Some(_) => {
                return Some(super::error::respond(
                    req,
                    actix_web::http::StatusCode::FORBIDDEN,
                    "this is not the publisher's token (page.admin_token)",
                ))
            }
            None => {
                return Some(super::error::respond(
                    req,
                    actix_web::http::StatusCode::FORBIDDEN,
                    "this server has no publisher's view: set page.admin_token to have one",
                ))
            }
        }
    };
    let mut to = req.path().to_owned();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest.join("&"));
    }
    Some(
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(set)
            .finish(),
    )
}

/// The pairs of a query string, percent-decoded (`+` is a space, as forms send it).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_cookies_match_only_their_own() {
        let t = AdminToken::new("0123456789abcdef");
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches(""));
        assert!(!t.matches("0123456789abcdef0"));
        assert!(t.matches_cookie(&t.cookie_value()));
        assert!(!t.matches_cookie("0123456789abcdef"));
        assert!(!t.matches_cookie(&"0".repeat(64)));
        assert!(!t.matches_cookie("zz"));
        assert!(!AdminToken::new("another token, long").matches_cookie(&t.cookie_value()));
    }

    #[test]
    fn query_pairs_are_decoded() {
        assert_eq!(
            url_pairs("q=a+b%2Fc&token=x%26y&logout"),
            vec![
                ("q".into(), "a b/c".into()),
                ("token".into(), "x&y".into()),
                ("logout".into(), String::new())
            ]
        );
    }
}
