//! Endpoint picking (`Cluster::pick`, which runs the balancers of
//! `cluster::lb`): round robin, least request (power of two choices) and
//! random, over 3 and 100 static endpoints. Clusters come from YAML through
//! the proxy's config loader and `Cluster::try_spawn`. Every endpoint is
//! available, and the endpoints carry unequal in-flight request counts so
//! least request has a real comparison to make. A pick includes what
//! `Cluster::pick` does besides the balancer: loading the endpoint snapshot
//! and counting available endpoints (for the panic threshold).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::Ordering;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod support;

const POLICIES: [&str; 3] = ["round_robin", "least_request", "random"];
const SIZES: [usize; 2] = [3, 100];

/// One static cluster per policy and size, named `<policy>-<size>`.
fn config_yaml() -> String {
    let mut yaml = String::from("clusters:\n");
    for lb in POLICIES {
        for n in SIZES {
            let endpoints: Vec<String> = (0..n)
                .map(|i| format!("\"10.0.{}.{}:8080\"", i / 250, i % 250 + 1))
                .collect();
            writeln!(
                yaml,
                "  - {{ name: {lb}-{n}, lb: {lb}, endpoints: [{}] }}",
                endpoints.join(", ")
            )
            .expect("write to a String");
        }
    }
    yaml
}

fn pick(c: &mut Criterion) {
    let config = support::load(&config_yaml());
    let rt = support::runtime();
    let _entered = rt.enter();
    let clusters = support::clusters(&config);
    let mut group = c.benchmark_group("lb_pick");
    for lb in POLICIES {
        for n in SIZES {
            let cluster = &clusters[&format!("{lb}-{n}")];
            let endpoints = cluster.endpoints();
            assert_eq!(endpoints.endpoints.len(), n);
            for (i, e) in endpoints.endpoints.iter().enumerate() {
                e.active_requests
                    .store((i * 7 % 11) as u32, Ordering::Relaxed);
            }
            assert!(cluster.pick(&[]).is_some(), "{lb}-{n} picks an endpoint");
            group.bench_with_input(BenchmarkId::new(lb, n), cluster, |b, cluster| {
                b.iter(|| cluster.pick(black_box(&[])))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
