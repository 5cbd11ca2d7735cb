//! A connection that holds its place under the listener's limit while it lives: the
//! socket type of an incoming stream handed to a server that owns the connection
//! itself (tonic, for ext_proc), over TCP or a Unix domain socket.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener};

use super::{Accepted, Listen, Permit};

/// An accepted connection and its permit.
pub struct Admitted<S = TcpStream> {
    stream: S,
    _permit: Permit,
}

impl From<Accepted<TcpListener>> for Admitted<TcpStream> {
    fn from(a: Accepted<TcpListener>) -> Self {
        let _ = a.stream.set_nodelay(true);
        Admitted {
            stream: a.stream,
            _permit: a.permit,
        }
    }
}

impl From<Accepted<UnixListener>> for Admitted<tokio::net::UnixStream> {
    fn from(a: Accepted<UnixListener>) -> Self {
        Admitted {
            stream: a.stream,
            _permit: a.permit,
        }
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Admitted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
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
pub fn incoming<L>(
    acceptor: super::Acceptor<L>,
) -> impl futures::Stream<Item = Result<Admitted<L::Stream>, std::io::Error>> + Send
where
    L: Listen,
    Admitted<L::Stream>: From<Accepted<L>>,
{
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        let accepted = acceptor.accept().await;
        Some((Ok(Admitted::from(accepted)), acceptor))
    })
}
