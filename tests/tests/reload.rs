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

/// A config of direct-response listeners `(name, port)` and an admin port.
fn direct_listeners(admin: u16, listeners: &[(&str, u16)]) -> String {
    let mut cfg = ConfigBuilder::new().admin(admin);
    for (name, port) in listeners {
        cfg = cfg.http_listener(
            name,
            *port,
            vec![mesh_tests::route_prefix_direct("/", 200, name)],
        );
    }
    cfg.build()
}

/// The status `GET /` gets on `port` (`None`: no HTTP answer at all).
async fn status_on(port: u16) -> Option<u16> {
    let out = mesh_tests::curl(&[
        "-s",
        "-m",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{port}/"),
    ])
    .await
    .ok()?;
    out.stdout.trim().parse().ok().filter(|&s| s != 0)
}

async fn admin_listeners(admin: u16) -> String {
    mesh_tests::curl(&["-s", &format!("http://127.0.0.1:{admin}/listeners")])
        .await
        .map(|o| o.stdout)
        .unwrap_or_default()
}

/// Sends SIGHUP and waits until the reload counted as failed.
async fn reload_fails(proxy: &ProxyProcess, admin: u16, yaml: &str) {
    let failed = stat(admin, "server.config_reload_failed").await;
    proxy.write_config(yaml).expect("write");
    proxy.signal("HUP").expect("HUP");
    let counted = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { stat(admin, "server.config_reload_failed").await > failed },
    )
    .await;
    assert!(counted, "the reload was not counted as failed");
}

/// A listener moved to a port another process holds: the reload fails,
/// is counted, and the old listener keeps serving and is still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_bind_fails() {
    let (port, admin) = (free_port(), free_port());
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let held_port = held.local_addr().expect("addr").port();
    let proxy = ProxyProcess::start_and_wait(
        &direct_listeners(admin, &[("main", port)]),
        &[],
        &[port, admin],
    )
    .await
    .expect("proxy");
    assert_eq!(status_on(port).await, Some(200));

    reload_fails(
        &proxy,
        admin,
        &direct_listeners(admin, &[("main", held_port)]),
    )
    .await;
    assert_eq!(
        status_on(port).await,
        Some(200),
        "the old port after a failed reload"
    );
    let listed = admin_listeners(admin).await;
    assert!(
        listed.contains(&format!("main::127.0.0.1:{port}")),
        "/listeners after a failed reload: {listed:?}"
    );
    assert!(stat(admin, "server.config_reload_total").await >= 1);
    let log = proxy.stderr_text();
    assert!(
        log.contains("nothing was changed")
            && log.contains(&format!("cannot bind 127.0.0.1:{held_port}")),
        "{log}"
    );
    drop(held);
}

/// One listener moves, another is added on a held port: nothing changes
/// (the moved one still serves at its old port, not at the new one; the
/// untouched one serves on). Once the port is free, the same config applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_failing_on_its_second_bind_leaves_every_listener_as_it_was() {
    let (a, b, moved, admin) = (free_port(), free_port(), free_port(), free_port());
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let held_port = held.local_addr().expect("addr").port();
    let proxy = ProxyProcess::start_and_wait(
        &direct_listeners(admin, &[("a", a), ("b", b)]),
        &[],
        &[a, b, admin],
    )
    .await
    .expect("proxy");
    let before = admin_listeners(admin).await;
    let next = direct_listeners(admin, &[("a", moved), ("b", b), ("c", held_port)]);

    reload_fails(&proxy, admin, &next).await;
    assert_eq!(status_on(a).await, Some(200), "a at its old port");
    assert_eq!(status_on(b).await, Some(200), "b");
    assert_eq!(
        status_on(moved).await,
        None,
        "a's new port serves after a failed reload: {:?}; /listeners: {}\n{}",
        mesh_tests::curl(&["-s", "-i", &format!("http://127.0.0.1:{moved}/")])
            .await
            .map(|o| o.stdout),
        admin_listeners(admin).await,
        proxy.stderr_text()
    );
    assert_eq!(admin_listeners(admin).await, before);

    // The port is free now: the same config applies as a whole.
    drop(held);
    let total = stat(admin, "server.config_reload_total").await;
    proxy.signal("HUP").expect("HUP");
    let applied = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { status_on(held_port).await == Some(200) },
    )
    .await;
    assert!(applied, "the config did not apply once the port was free");
    assert!(stat(admin, "server.config_reload_total").await > total);
    assert_eq!(status_on(moved).await, Some(200));
    assert_eq!(status_on(b).await, Some(200));
    let gone = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { status_on(a).await.is_none() },
    )
    .await;
    assert!(gone, "a still answers at its old port");
}
