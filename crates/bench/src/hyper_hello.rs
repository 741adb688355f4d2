//! hyper's side of the HTTP comparison: `http_hello`'s `GET` routes (`/`,
//! `/hola/NAME`, else `404`) as a hyper 1.x service, one HTTP/1.1
//! connection per task, as hyper's own examples serve (`hyper-util`'s
//! `TokioIo`, the Tokio timer for its header deadline).
//!
//! `pipeline_flush` is hyper's option to hold the replies of pipelined
//! requests and write them in one batch (its default writes each reply as
//! it is ready); enchufe always batches, so both of hyper's settings run.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Accepts until the process ends; connection tasks are not tracked (the
/// server is stopped by ending its process, as the floor is).
pub(crate) async fn serve(listener: TcpListener, pipeline_flush: bool) {
    crate::floor::accept_each(listener, move |stream| async move {
        let _ = http1::Builder::new()
            .timer(TokioTimer::new())
            .pipeline_flush(pipeline_flush)
            .serve_connection(TokioIo::new(stream), service_fn(hello))
            .await;
    })
    .await;
}

/// `http_hello`'s handler for `GET`: the same bodies and `Content-Type`.
async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (status, body) = if path == "/" {
        (StatusCode::OK, Bytes::from_static(b"hola\n"))
    } else {
        match path.strip_prefix("/hola/") {
            Some(name) if !name.is_empty() => (StatusCode::OK, format!("hola, {name}\n").into()),
            _ => (
                StatusCode::NOT_FOUND,
                format!("no hay nada en {path}\n").into(),
            ),
        }
    };
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(reply)
}
