//! The `ProcessingResponse`s the stream sends: header replies, body replies for each
//! body mode, FULL_DUPLEX_STREAMED chunks, and the dynamic metadata they carry.

use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation::Mutation, processing_response::Response as Out, BodyMutation, BodyResponse,
    CommonResponse, HeadersResponse, ProcessingResponse, StreamedBodyResponse,
};
use envoy_types::pb::google::protobuf::Struct;
use http::{HeaderName, HeaderValue};

use super::super::convert;
use crate::pipeline::{BodyOutput, Direction, Exchange, HeaderDiff};

/// Largest body chunk sent back in one `streamed_response` (Envoy's gRPC message budget
/// with room for framing).
pub const MAX_STREAMED_CHUNK: usize = 62_000;

pub(super) fn common(diff: &HeaderDiff, clear_route_cache: bool) -> CommonResponse {
    CommonResponse {
        header_mutation: convert::mutation(diff),
        clear_route_cache,
        ..Default::default()
    }
}

/// Sets `:path` (a `urlRewrite`) in a request header reply.
pub(super) fn set_path(common: &mut CommonResponse, path: &str) {
    use envoy_types::pb::envoy::config::core::v3::{HeaderValue as PbHeader, HeaderValueOption};
    use envoy_types::pb::google::protobuf::BoolValue;
    let mutation = common.header_mutation.get_or_insert_with(Default::default);
    // As `convert::mutation` writes a replacement: Envoy reads the `append` flag.
    #[allow(deprecated)]
    mutation.set_headers.push(HeaderValueOption {
        header: Some(PbHeader {
            key: ":path".into(),
            raw_value: path.as_bytes().to_vec(),
            ..Default::default()
        }),
        append: Some(BoolValue { value: false }),
        ..Default::default()
    });
}

/// A header reply for `dir`.
pub(super) fn headers(dir: Direction, common: CommonResponse) -> Out {
    let reply = HeadersResponse {
        response: Some(common),
    };
    match dir {
        Direction::Request => Out::RequestHeaders(reply),
        Direction::Response => Out::ResponseHeaders(reply),
    }
}

fn body(dir: Direction, common: CommonResponse) -> ProcessingResponse {
    let reply = BodyResponse {
        response: Some(common),
    };
    ProcessingResponse {
        response: Some(match dir {
            Direction::Request => Out::RequestBody(reply),
            Direction::Response => Out::ResponseBody(reply),
        }),
        ..Default::default()
    }
}

/// The `CommonResponse` of a header or body reply.
pub(super) fn common_mut(resp: &mut ProcessingResponse) -> Option<&mut CommonResponse> {
    match resp.response.as_mut()? {
        Out::RequestHeaders(h) | Out::ResponseHeaders(h) => h.response.as_mut(),
        Out::RequestBody(b) | Out::ResponseBody(b) => b.response.as_mut(),
        _ => None,
    }
}

/// Removes `content-length` with a header reply.
pub(super) fn drop_content_length(resp: &mut ProcessingResponse) {
    if let Some(common) = common_mut(resp) {
        let m = common.header_mutation.get_or_insert_with(Default::default);
        m.set_headers.retain(|h| {
            h.header
                .as_ref()
                .is_none_or(|h| !h.key.eq_ignore_ascii_case("content-length"))
        });
        m.remove_headers.push("content-length".to_string());
    }
}

/// Adds `late` headers to a held header reply, replacing what it set or removed for the
/// same names.
pub(super) fn merge_late(common: &mut CommonResponse, late: Vec<(HeaderName, HeaderValue)>) {
    if late.is_empty() {
        return;
    }
    let mutation = common.header_mutation.get_or_insert_with(Default::default);
    let extra = convert::mutation(&late_diff(late, Vec::new())).unwrap_or_default();
    let names: Vec<String> = extra
        .set_headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|h| h.key.clone()))
        .collect();
    mutation.remove_headers.retain(|r| !names.contains(r));
    mutation
        .set_headers
        .retain(|h| h.header.as_ref().is_none_or(|h| !names.contains(&h.key)));
    mutation.set_headers.extend(extra.set_headers);
}

/// Adds `removals` to a held header reply, dropping what it set for the same names.
pub(super) fn merge_removals(common: &mut CommonResponse, removals: Vec<HeaderName>) {
    if removals.is_empty() {
        return;
    }
    let mutation = common.header_mutation.get_or_insert_with(Default::default);
    let names: Vec<String> = removals.iter().map(|n| n.as_str().to_string()).collect();
    mutation
        .set_headers
        .retain(|h| h.header.as_ref().is_none_or(|h| !names.contains(&h.key)));
    for name in names {
        if !mutation.remove_headers.contains(&name) {
            mutation.remove_headers.push(name);
        }
    }
}

fn late_diff(late: Vec<(HeaderName, HeaderValue)>, remove: Vec<HeaderName>) -> HeaderDiff {
    HeaderDiff {
        remove,
        set: late.into_iter().map(|(n, v)| (n, vec![v])).collect(),
    }
}

/// The reply to one body message in BUFFERED, BUFFERED_PARTIAL or STREAMED mode: the
/// chunk replaced when it changed (cleared while tollgate holds it). `late`: headers to
/// set with it and `removals` to remove (only a buffered body's headers are still held
/// by Envoy).
pub(super) fn body_reply(
    dir: Direction,
    output: &BodyOutput,
    late: Vec<(HeaderName, HeaderValue)>,
    removals: Vec<HeaderName>,
    clear_route_cache: bool,
) -> ProcessingResponse {
    let mut common = common(&late_diff(late, removals), clear_route_cache);
    if output.changed {
        common.body_mutation = Some(BodyMutation {
            mutation: Some(if output.data.is_empty() {
                Mutation::ClearBody(true)
            } else {
                Mutation::Body(output.data.to_vec())
            }),
        });
    }
    body(dir, common)
}

/// FULL_DUPLEX_STREAMED: the body sent back as `streamed_response` chunks.
pub(super) fn streamed_chunks(
    dir: Direction,
    data: Bytes,
    end_of_stream: bool,
) -> Vec<ProcessingResponse> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut rest = data;
    while rest.len() > MAX_STREAMED_CHUNK {
        chunks.push(rest.split_to(MAX_STREAMED_CHUNK));
    }
    chunks.push(rest);
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let common = CommonResponse {
                body_mutation: Some(BodyMutation {
                    mutation: Some(Mutation::StreamedResponse(StreamedBodyResponse {
                        // Envoy's own chunk, passed through whole, goes back without a
                        // copy (a `Bytes` made from a `Vec` and not shared gives it back).
                        body: Vec::from(data),
                        end_of_stream: end_of_stream && i == last,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            };
            body(dir, common)
        })
        .collect()
}

/// The dynamic metadata processors recorded since the last reply, in Envoy's form.
pub(super) fn take_metadata(ex: &mut Exchange) -> Option<Struct> {
    let md = convert::metadata(&ex.cx.dynamic_metadata);
    ex.cx.dynamic_metadata.clear();
    md
}

/// Puts `md` on the last reply (merged with what it carries).
pub(super) fn attach_metadata(out: &mut [ProcessingResponse], md: Option<Struct>) {
    if let (Some(md), Some(last)) = (md, out.last_mut()) {
        match last.dynamic_metadata.as_mut() {
            Some(existing) => existing.fields.extend(md.fields),
            None => last.dynamic_metadata = Some(md),
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response;

    use super::*;

    /// The bodies of `replies`, in order.
    fn bodies(replies: &[ProcessingResponse]) -> Vec<&Vec<u8>> {
        replies
            .iter()
            .map(|r| match &r.response {
                Some(Response::RequestBody(b)) => match b
                    .response
                    .as_ref()
                    .and_then(|c| c.body_mutation.as_ref())
                    .and_then(|m| m.mutation.as_ref())
                {
                    Some(Mutation::StreamedResponse(s)) => &s.body,
                    other => panic!("not a streamed body: {other:?}"),
                },
                other => panic!("not a request body reply: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_chunk_passed_through_goes_back_without_a_copy_and_a_long_one_in_pieces() {
        let chunk = vec![7u8; 16 * 1024];
        let at = chunk.as_ptr();
        let replies = streamed_chunks(Direction::Request, Bytes::from(chunk), false);
        assert_eq!(bodies(&replies)[0].as_ptr(), at, "the same allocation");

        let long = Bytes::from(vec![1u8; 2 * MAX_STREAMED_CHUNK + 5]);
        let replies = streamed_chunks(Direction::Request, long, true);
        let sizes: Vec<usize> = bodies(&replies).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [MAX_STREAMED_CHUNK, MAX_STREAMED_CHUNK, 5]);
    }
}
