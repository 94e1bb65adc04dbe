use super::*;

fn ca() -> Ca {
    Ca::create("mesh.local").expect("CA")
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("id")
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn round_trips_the_spiffe_id() {
    let ca = ca();
    let token = Token::create(&ca, &id("spiffe://mesh.local/orders"), HOUR).expect("token");
    assert_eq!(token.split('.').count(), 3);
    assert!(!token.contains(['=', '+', '/', '\n']));
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        Token::verify(&ca, &token, now),
        Ok(id("spiffe://mesh.local/orders"))
    );
    // Surrounding whitespace (a token file's newline) is tolerated.
    assert_eq!(
        Token::verify(&ca, &format!("{token}\n"), now),
        Ok(id("spiffe://mesh.local/orders"))
    );
    let claims = Token::verified_claims(ca.cert_der(), &token).expect("claims");
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(claims.jti.len(), 32);
}

#[test]
fn each_token_is_unique() {
    let ca = ca();
    let a = Token::create(&ca, &id("spiffe://mesh.local/a"), HOUR).expect("a");
    let b = Token::create(&ca, &id("spiffe://mesh.local/a"), HOUR).expect("b");
    assert_ne!(a, b);
}

#[test]
fn expired_tokens_are_refused_with_how_long_ago() {
    let ca = ca();
    let then = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let token = Token::create_at(&ca, &id("spiffe://mesh.local/a"), HOUR, then).expect("token");
    let err = Token::verify(&ca, &token, OffsetDateTime::now_utc()).expect_err("expired");
    assert!(matches!(err, TokenError::Expired { .. }));
    assert_eq!(err.to_string(), "join token expired 1h ago");
    // Exactly at exp it is already expired.
    let claims = Token::verified_claims(ca.cert_der(), &token).expect("claims");
    let at_exp = OffsetDateTime::from_unix_timestamp(claims.exp).expect("time");
    assert!(Token::verify(&ca, &token, at_exp).is_err());
    assert!(Token::verify(&ca, &token, at_exp - time::Duration::seconds(1)).is_ok());
}

#[test]
fn tampered_tokens_fail_the_signature() {
    let ca = ca();
    let token = Token::create(&ca, &id("spiffe://mesh.local/web"), HOUR).expect("token");
    let parts: Vec<&str> = token.split('.').collect();
    // Swap in a payload for another identity, keep the signature.
    let forged_claims = TokenClaims {
        sub: "spiffe://mesh.local/admin".into(),
        iat: 0,
        exp: i64::MAX,
        jti: "00".into(),
    };
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).expect("json"));
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        Token::verify(&ca, &tampered, now),
        Err(TokenError::BadSignature)
    );
    // A token from another CA of the same trust domain.
    let other = Ca::create("mesh.local").expect("other");
    let theirs = Token::create(&other, &id("spiffe://mesh.local/web"), HOUR).expect("token");
    assert_eq!(
        Token::verify(&ca, &theirs, now),
        Err(TokenError::BadSignature)
    );
    // Flipped signature bits.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[10] ^= 1;
    let bad = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(Token::verify(&ca, &bad, now), Err(TokenError::BadSignature));
}

#[test]
fn malformed_tokens_are_refused_without_panicking() {
    let ca = ca();
    let now = OffsetDateTime::now_utc();
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD
            .encode(r#"{"sub":"spiffe://mesh.local/a","iat":0,"exp":9999999999,"jti":"x"}"#)
    );
    assert_eq!(
        Token::verify(&ca, &none_alg, now),
        Err(TokenError::Algorithm { alg: "none".into() })
    );
    for bad in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "e30.e30.e30",
        "é.é.é",
    ] {
        let err = Token::verify(&ca, bad, now).expect_err(bad);
        assert!(
            matches!(err, TokenError::Malformed { .. } | TokenError::BadSignature),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        Token::verify(&ca, &"a".repeat(10_000), now),
        Err(TokenError::Malformed { reason: "too long" })
    );
}

#[test]
fn refuses_to_mint_for_other_trust_domains_or_zero_ttl() {
    let ca = ca();
    assert!(matches!(
        Token::create(&ca, &id("spiffe://other.local/a"), HOUR),
        Err(TokenError::SubjectNotInTrustDomain { .. })
    ));
    assert_eq!(
        Token::create(&ca, &id("spiffe://mesh.local/a"), Duration::ZERO),
        Err(TokenError::ZeroTtl)
    );
}
