use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::*;

fn unix_acceptor(
    dir: &tempfile::TempDir,
    max: u32,
    refusal: Refusal,
) -> (Acceptor<UnixListener>, std::path::PathBuf, Metrics) {
    let path = dir.path().join("ext_proc.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let metrics = Metrics::new();
    let acceptor = Acceptor::new(
        listener,
        "ext_proc",
        NonZeroU32::new(max).unwrap(),
        refusal,
        &metrics,
    );
    (acceptor, path, metrics)
}

/// A Unix domain socket keeps its limit: beyond it a connection waits in the backlog
/// until an accepted one ends.
#[tokio::test]
async fn a_unix_socket_holds_connections_beyond_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut acceptor, path, metrics) = unix_acceptor(&dir, 1, Refusal::Hold);
    let _first = UnixStream::connect(&path).await.unwrap();
    let _second = UnixStream::connect(&path).await.unwrap();
    let accepted = acceptor.accept().await;
    let labels = ListenerLabels {
        listener: "ext_proc".into(),
    };
    assert_eq!(metrics.connections.active.get_or_create(&labels).get(), 1);

    let waiting = tokio::time::timeout(Duration::from_millis(200), acceptor.accept()).await;
    assert!(
        waiting.is_err(),
        "a second connection was accepted beyond the limit"
    );
    drop(accepted);
    let second = tokio::time::timeout(Duration::from_secs(5), acceptor.accept())
        .await
        .expect("the held connection is accepted once the first ends");
    assert_eq!(metrics.connections.active.get_or_create(&labels).get(), 1);
    drop(second);
    assert_eq!(metrics.connections.active.get_or_create(&labels).get(), 0);
}

/// Beyond the limit with a reply, the peer reads the reply and the refusal is counted.
#[tokio::test]
async fn a_unix_socket_refusal_is_answered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut acceptor, path, metrics) = unix_acceptor(&dir, 1, Refusal::Reply(b"busy"));
    let _first = UnixStream::connect(&path).await.unwrap();
    let _held = acceptor.accept().await;
    let mut second = UnixStream::connect(&path).await.unwrap();
    second.write_all(b"hello").await.unwrap();
    let mut third = UnixStream::connect(&path).await.unwrap();
    let accepting = tokio::spawn(async move {
        let _never = acceptor.accept().await;
    });
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"busy");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"busy");
    let labels = ListenerLabels {
        listener: "ext_proc".into(),
    };
    assert_eq!(metrics.connections.refused.get_or_create(&labels).get(), 2);
    accepting.abort();
}
