//! Property tests of join tokens (proptest) and the replay of the fuzz
//! corpus `fuzz/corpus/token/` (the `token` cargo-fuzz target's seeds).

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;

use super::{Token, TokenError, sign_payload};
use crate::ca::Ca;
use crate::spiffe::SpiffeId;

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::create("mesh.local").expect("CA"))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn valid_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let id = SpiffeId::parse("spiffe://mesh.local/orders").expect("id");
        Token::create(ca(), &id, Duration::from_secs(3600)).expect("token")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic the parser and never verify.
    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(Token::verify_full(ca(), &text, now()).is_err());
    }

    /// Three base64url-looking parts (what gets past the cheap checks)
    /// never panic and never verify.
    #[test]
    fn token_shaped_garbage_is_refused(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,100}") {
        let token = format!("{h}.{p}.{s}");
        prop_assert!(Token::verify_full(ca(), &token, now()).is_err());
    }

    /// Any single-byte change of a valid token is refused.
    #[test]
    fn any_single_byte_tamper_is_refused(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let token = valid_token();
        let mut bytes = token.as_bytes().to_vec();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let tampered = String::from_utf8_lossy(&bytes);
        prop_assert!(Token::verify_full(ca(), &tampered, now()).is_err(), "accepted {tampered:?}");
    }

    /// create → verify returns the identity and the expiry it was made with.
    #[test]
    fn create_then_verify_round_trips(path in "[a-z0-9-]{1,12}(/[a-z0-9._-]{1,12}){0,3}", ttl in 1u64..100_000_000) {
        prop_assume!(path != "mesh-ca" && !path.split('/').any(|seg| seg == "." || seg == ".."));
        let id = SpiffeId::new("mesh.local", &path).expect("id");
        let at = now();
        let token = Token::create_at(ca(), &id, Duration::from_secs(ttl), at).expect("token");
        let verified = Token::verify_full(ca(), &token, at).expect("verifies");
        prop_assert_eq!(&verified.id, &id);
        prop_assert_eq!(verified.exp, at.unix_timestamp() + ttl as i64);
        // And it expires exactly then.
        let later = at + time::Duration::seconds(ttl as i64);
        let refused = matches!(Token::verify_full(ca(), &token, later), Err(TokenError::Expired { .. }));
        prop_assert!(refused);
    }
}

/// Replays `fuzz/corpus/token/`: raw seeds are verified as they are;
/// `payload-*` seeds are first signed by the CA so they reach the claims
/// parser. Only the two well-formed payloads verify (the CA signed them:
/// an `exp` at i64::MAX is the CA's own choice, not an attack).
#[test]
fn token_fuzz_corpus_replays_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/token");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("seed");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let token = if name.starts_with("payload-") {
            sign_payload(ca(), &data).expect("signed")
        } else {
            String::from_utf8_lossy(&data).into_owned()
        };
        let result = Token::verify_full(ca(), &token, now());
        let valid = ["payload-valid.json", "payload-i64-edges.json"].contains(&name.as_str());
        assert_eq!(result.is_ok(), valid, "{name}: {result:?}");
        seen += 1;
    }
    assert!(seen >= 25, "corpus has only {seen} seeds");
}
