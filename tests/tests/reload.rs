//! End-to-end: hot reload under a steady load loses no request; an invalid
//! config is rejected and counted while the old one keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, free_port, route_prefix};

fn config(
    port: u16,
    admin: u16,
    cluster: &str,
    extra_listener: Option<u16>,
    a: SocketAddr,
    b: SocketAddr,
) -> String {
    let mut cfg = ConfigBuilder::new()
        .admin(admin)
        .http_listener("main", port, vec![route_prefix("/", cluster)])
        .cluster("a", &[a])
        .cluster("b", &[b]);
    if let Some(p) = extra_listener {
        cfg = cfg.http_listener(
            "extra",
            p,
            vec![mesh_tests::route_prefix_direct("/", 200, "extra\n")],
        );
    }
    cfg.build()
}

async fn stat(admin: u16, name: &str) -> u64 {
    mesh_tests::admin_stat(admin, name)
        .await
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request_and_bad_configs_are_rejected() {
    let (a, b) = (
        LedgerUpstream::start().await.expect("a"),
        LedgerUpstream::start().await.expect("b"),
    );
    let (port, admin, extra) = (free_port(), free_port(), free_port());
    let proxy = ProxyProcess::start_and_wait(
        &config(port, admin, "a", None, a.addr(), b.addr()),
        &[],
        &[port, admin],
    )
    .await
    .expect("proxy");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let req = hyper::Request::get("/x")
                        .header("host", "t")
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .expect("req");
                    match tx.send_request(req).await {
                        Ok(resp) if resp.status() == 200 => {
                            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let wait_more = |n: usize| {
        let ok = Arc::clone(&ok);
        async move {
            let target = ok.load(Ordering::Relaxed) + n;
            assert!(
                mesh_tests::wait_until_async(
                    Duration::from_secs(10),
                    Duration::from_millis(10),
                    || ok.load(Ordering::Relaxed) >= target
                )
                .await
            );
        }
    };
    wait_more(50).await;
    // Five reloads: switch clusters back and forth, add and remove a listener.
    for (i, (cluster, listener)) in [
        ("b", Some(extra)),
        ("a", Some(extra)),
        ("b", None),
        ("a", None),
        ("b", Some(extra)),
    ]
    .into_iter()
    .enumerate()
    {
        proxy
            .write_config(&config(port, admin, cluster, listener, a.addr(), b.addr()))
            .expect("write");
        proxy.signal("HUP").expect("HUP");
        let want = i as u64 + 1;
        let applied = mesh_tests::wait_until_ok(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { stat(admin, "server.config_reload_total").await >= want },
        )
        .await;
        assert!(applied, "reload {want} not applied");
        wait_more(50).await;
        let extra_up = std::net::TcpStream::connect(("127.0.0.1", extra)).is_ok();
        assert_eq!(
            extra_up,
            listener.is_some(),
            "reload {want}: extra listener"
        );
    }
    let b_before = b.entries().len();
    assert!(
        b_before > 0 && !a.entries().is_empty(),
        "route changes applied to new requests"
    );
    wait_more(50).await;
    assert!(
        b.entries().len() > b_before,
        "the last config (cluster b) serves"
    );

    // An invalid config: rejected, counted, the old one keeps serving.
    proxy
        .write_config("listeners: [{ name: main, address: 'not an address' }]\n")
        .expect("write");
    proxy.signal("HUP").expect("HUP");
    let rejected = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { stat(admin, "server.config_reload_failed").await >= 1 },
    )
    .await;
    assert!(rejected);
    wait_more(50).await;
    assert!(
        proxy.stderr_text().contains("config reload rejected"),
        "{}",
        proxy.stderr_text()
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests across reloads ({} ok)",
        ok.load(Ordering::Relaxed)
    );
}
