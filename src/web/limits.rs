//! Bounds on request heads. actix refuses an unfinished head over 32 KiB or more than 96
//! headers, but a head that arrives whole in one read is parsed at any size; these bounds hold
//! whatever the read pattern, before any handler (tracker, page, /files) sees the request.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target (path and query), in bytes: longer is answered 414.
    pub max_uri: usize,
    /// Most bytes over all header names and values: more is answered 431.
    pub max_headers: usize,
}

impl HeadLimits {
    /// The status to refuse `req` with, if it is over a bound.
    pub fn refusal(&self, req: &HttpRequest) -> Option<StatusCode> {
        let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri > self.max_uri {
            return Some(StatusCode::URI_TOO_LONG);
        }
        let headers: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if headers > self.max_headers {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn long_targets_and_big_headers_are_refused() {
        let limits = HeadLimits {
            max_uri: 20,
            max_headers: 30,
        };
        let ok = TestRequest::get().uri("/announce?a=b").to_http_request();
        assert_eq!(limits.refusal(&ok), None);
        let long = TestRequest::get()
            .uri("/announce?info_hash=xxxxxxxx")
            .to_http_request();
        assert_eq!(limits.refusal(&long), Some(StatusCode::URI_TOO_LONG));
        let big = TestRequest::get()
            .uri("/")
            .insert_header(("x-big", "y".repeat(40)))
            .to_http_request();
        assert_eq!(
            limits.refusal(&big),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
