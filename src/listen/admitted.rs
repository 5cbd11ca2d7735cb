//! A connection that holds its place under the listener's limit while it lives: the
//! socket type of an incoming stream handed to a server that owns the connection
//! itself (tonic, for ext_proc).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Accepted, Permit};

/// An accepted TCP connection and its permit.
pub struct Admitted {
    stream: TcpStream,
    _permit: Permit,
}

impl From<Accepted> for Admitted {
    fn from(a: Accepted) -> Self {
        let _ = a.stream.set_nodelay(true);
        Admitted {
            stream: a.stream,
            _permit: a.permit,
        }
    }
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of `acceptor` as the incoming stream a tonic server takes.
pub fn incoming(
    acceptor: super::Acceptor,
) -> impl futures::Stream<Item = Result<Admitted, std::io::Error>> + Send {
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let accepted = acceptor.accept().await;
        Some((Ok(Admitted::from(accepted)), acceptor))
    })
}
