//! Error responses a person can read, in the form the client asked for: JSON under `/api/`, an
//! HTML page for browsers (`Accept: text/html`), plain text for everyone else (curl, wget, web
//! seeds). Every error the web face answers goes through [`respond`], so they all look alike.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use super::page::escape;

/// The form of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Html,
    Text,
}

impl Form {
    /// JSON for API paths whatever `Accept` says (API clients parse what they get); HTML when
    /// the client takes it (browsers send `text/html` first); plain text otherwise.
    pub fn of(path: &str, accept: Option<&str>) -> Form {
        if path == "/api" || path.starts_with("/api/") {
            Form::Json
        } else if accept.is_some_and(|a| a.contains("text/html")) {
            Form::Html
        } else {
            Form::Text
        }
    }
}

/// An error response for `req`: `status` with `detail` (one sentence for a person), never stored
/// by caches.
pub fn respond(req: &HttpRequest, status: StatusCode, detail: &str) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let mut builder = HttpResponse::build(status);
    render(
        &mut builder,
        Form::of(req.uri().path(), accept),
        status,
        detail,
    )
}

/// `respond` into a builder that already has headers of its own (`Allow`, `Content-Range`).
pub fn render(
    builder: &mut HttpResponseBuilder,
    form: Form,
    status: StatusCode,
    detail: &str,
) -> HttpResponse {
    let reason = status.canonical_reason().unwrap_or("Error");
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    match form {
        Form::Json => builder
            .content_type("application/json")
            .body(serde_json::json!({"error": detail, "status": status.as_u16()}).to_string()),
        Form::Html => builder
            .content_type("text/html; charset=utf-8")
            .body(format!(
                "<!doctype html><html lang=en><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width,initial-scale=1\">\
             <title>{code} {reason}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}</style>\
             <h1>{reason}</h1><p>{detail}</p><p><a href=\"/\">All downloads</a></p></html>",
                code = status.as_u16(),
                detail = escape(detail),
            )),
        Form::Text => builder
            .content_type("text/plain; charset=utf-8")
            .body(format!("{} {reason}: {detail}\n", status.as_u16())),
    }
}

pub fn not_found(req: &HttpRequest, detail: &str) -> HttpResponse {
    respond(req, StatusCode::NOT_FOUND, detail)
}

/// 405 for a path that exists, with the methods it takes.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::ALLOW, allow));
    render(
        &mut builder,
        Form::of(req.uri().path(), accept),
        status,
        &format!(
            "{} is not answered here; this path takes {allow}",
            req.method()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use actix_web::test::TestRequest;

    fn body(r: HttpResponse) -> String {
        let b = r.into_body().try_into_bytes().unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn the_form_follows_the_path_and_accept() {
        assert_eq!(Form::of("/api/torrents/x", Some("text/html")), Form::Json);
        assert_eq!(Form::of("/files/x", Some("text/html,*/*")), Form::Html);
        assert_eq!(Form::of("/files/x", Some("*/*")), Form::Text);
        assert_eq!(Form::of("/apix", None), Form::Text);
    }

    #[test]
    fn details_are_escaped_in_html_and_json() {
        let req = TestRequest::get()
            .uri("/files/x")
            .insert_header(("Accept", "text/html"))
            .to_http_request();
        let html = body(not_found(&req, "no `<script>` here"));
        assert!(
            html.contains("&lt;script&gt;") && !html.contains("<script>"),
            "{html}"
        );
        let req = TestRequest::get().uri("/api/x").to_http_request();
        let r = not_found(&req, "a \"quoted\" thing");
        assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
        let j: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
        assert_eq!(j["error"], "a \"quoted\" thing");
        assert_eq!(j["status"], 404);
    }
}
