//! `cargo +nightly fuzz run spiffe`: SPIFFE ID and allow-pattern parsing on
//! arbitrary input must return, never panic; what parses displays back to
//! itself, and an ID is a pattern that matches itself. The unit tests in
//! `mesh-ca/src/spiffe/props.rs` replay `corpus/spiffe/` and run the same
//! checks as proptest properties.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_ca::{SpiffeId, SpiffePattern};

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    if let Ok(id) = SpiffeId::parse(&input) {
        assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
        let exact = SpiffePattern::parse(&input).expect("an id is a pattern");
        assert!(exact.matches(&id));
    }
    if let Ok(p) = SpiffePattern::parse(&input) {
        assert_eq!(p.to_string(), input);
    }
});
