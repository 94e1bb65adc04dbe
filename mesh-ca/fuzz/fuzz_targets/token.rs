//! `cargo +nightly fuzz run token`: join-token verification on arbitrary
//! input must return (an identity or an error), never panic. The unit test
//! `token::props::token_fuzz_corpus_replays_without_panicking` replays the
//! seeds in `corpus/token/` (and signs the `payload-*` ones first, which a
//! fuzzer cannot do, to reach the claims parser).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mesh_ca::{Ca, Token};

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::create("mesh.local").expect("fuzz CA"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Token::verify_full(ca(), &text, time::OffsetDateTime::now_utc());
});
