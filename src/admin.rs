//! The admin HTTP server: `/healthz` (the process is up), `/readyz` (it accepts traffic;
//! false while draining), `/metrics` (Prometheus text), `/config` (the effective
//! config as JSON, secrets redacted) and `/xds` (what is served over xDS, the nodes
//! connected, their ACKed versions and last NACKs).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::redacted_json;
use crate::listen::{self, Acceptor, ConnWatch, Refusal, Timeouts, Tracked, Watched};
use crate::pipeline::PipelineStore;

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<PipelineStore>,
    pub ready: Arc<AtomicBool>,
    pub xds: Arc<crate::xds::Xds>,
}

/// The reply to a connection beyond `limits.connections.adminMaxConnections`.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 21\r\n\r\ntoo many connections\n";

/// Serves the admin endpoints on `listener` until `shutdown` resolves, with its own
/// connection limit (so probes get through while the proxy is full) and the
/// connection timeouts of `limits.connections` (as configured at start).
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let pipeline = state.store.load();
    let metrics = pipeline.metrics.clone();
    let limits = pipeline.config().limits.connections.clone();
    drop(pipeline);
    let mut acceptor = Acceptor::new(
        listener,
        "admin",
        limits.admin_max_connections,
        Refusal::Reply(OVERLOADED),
        &metrics,
    );
    let timeouts = Timeouts::from(&limits);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let state = state.clone();
        let metrics = metrics.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = accepted.permit;
            let watch = ConnWatch::new();
            let io = TokioIo::new(Watched::new(accepted.stream, watch.clone()));
            let requests = watch.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let guard = requests.begin(req.version() == http::Version::HTTP_2);
                let resp = handle(&state, req).map(|b| Tracked::new(b, guard));
                async move { Ok::<_, Infallible>(resp) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = listen::boxed(builder.serve_connection(io, service).into_owned());
            listen::drive(conn, &watch, &timeouts, stop, "admin", &metrics).await;
        });
    }
    let _ = stop_tx.send(true);
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_string()),
        "/readyz" => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n".to_string())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
            }
        }
        "/metrics" => {
            let pipeline = state.store.load();
            let mut resp = text(StatusCode::OK, pipeline.metrics.encode());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/config" => {
            let pipeline = state.store.load();
            let body =
                serde_json::to_string_pretty(&redacted_json(&pipeline.loaded)).unwrap_or_default();
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/xds" => {
            let body = serde_json::to_string_pretty(&crate::xds::status::report(&state.xds))
                .unwrap_or_default();
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_string()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_overload_reply_is_well_formed() {
        crate::listen::overload_reply_body(super::OVERLOADED);
    }
}
