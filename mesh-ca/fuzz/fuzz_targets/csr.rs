//! `cargo +nightly fuzz run csr`: `Ca::sign_csr` on arbitrary input must
//! return (a certificate or an error), never panic.
//!
//! PEM input goes in as it is; anything else is first wrapped as the PEM of
//! a DER request, so the fuzzer spends its time in the ASN.1 and policy code
//! rather than in the base64 decoder. The unit test
//! `csr::tests::fuzz_corpus_replays_without_panicking` replays the seeds in
//! `corpus/csr/` the same way.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mesh_ca::{Ca, SignPolicy};

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::create("mesh.local").expect("fuzz CA"))
}

fuzz_target!(|data: &[u8]| {
    let input = if data.starts_with(b"-----BEGIN") {
        data.to_vec()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
            .into_bytes()
    };
    let _ = ca().sign_csr(&input, &SignPolicy::default());
});
