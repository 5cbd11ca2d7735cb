//! `Direction`: which half of an exchange a body, trailer or header block belongs to.
//! Shared by the exchange and both adapters, so that "request or response" is one type
//! and the choice between the two per-direction fields is written once, here.

use http::{HeaderName, HeaderValue};

use super::{BodyOutput, Ctx};

/// The request (client → upstream) or the response (upstream → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    /// Picks this direction's one of two values.
    pub fn pick<T>(self, request: T, response: T) -> T {
        match self {
            Direction::Request => request,
            Direction::Response => response,
        }
    }
}

// === impl Ctx ===

impl Ctx {
    /// The headers processors set for `dir` from its body phase (see
    /// `late_request_headers` / `late_response_headers`).
    pub fn late_headers_mut(&mut self, dir: Direction) -> &mut Vec<(HeaderName, HeaderValue)> {
        match dir {
            Direction::Request => &mut self.late_request_headers,
            Direction::Response => &mut self.late_response_headers,
        }
    }

    /// Takes `dir`'s late headers, plus the `content-length` of a body that reached its
    /// end rewritten while its headers were still held (a buffered body): the one set of
    /// header changes an adapter sends with such a body.
    pub fn take_late_headers(
        &mut self,
        dir: Direction,
        body: &BodyOutput,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut late = std::mem::take(self.late_headers_mut(dir));
        if body.changed && body.end_of_stream {
            late.retain(|(n, _)| n != http::header::CONTENT_LENGTH);
            late.push((
                http::header::CONTENT_LENGTH,
                HeaderValue::from(body.data.len()),
            ));
        }
        late
    }
}
