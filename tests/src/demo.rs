//! The demo mesh's one request, as a trace: what `mesh-cli up` and the
//! compose demo must both show.

use serde_json::Value;

/// Checks a trace in `mesh-cli traces --json` form: edge CLIENT → web
/// SERVER → web CLIENT → api SERVER, each span the parent of the next, and
/// each sidecar's server span naming its mTLS peer's identity.
pub fn assert_demo_chain(trace: &Value) {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let by = |service: &str, kind: &str| {
        spans
            .iter()
            .find(|s| s["service"] == service && s["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} span of {service} in {trace}"))
    };
    let (e, ws, wc, api) = (
        by("edge", "CLIENT"),
        by("web", "SERVER"),
        by("web", "CLIENT"),
        by("api", "SERVER"),
    );
    assert!(e["parent_span_id"].is_null(), "{trace}");
    assert_eq!(ws["parent_span_id"], e["span_id"], "{trace}");
    assert_eq!(
        wc["parent_span_id"], ws["span_id"],
        "web forwarded the context: {trace}"
    );
    assert_eq!(api["parent_span_id"], wc["span_id"], "{trace}");
    assert_eq!(
        ws["attributes"]["mesh.peer_identity"], "spiffe://mesh.local/edge",
        "{trace}"
    );
    assert_eq!(
        api["attributes"]["mesh.peer_identity"], "spiffe://mesh.local/web",
        "{trace}"
    );
}
