//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`) and the allow-list patterns
//! that match them.
//!
//! The rules are those of the SPIFFE ID specification as go-spiffe enforces
//! them: the scheme is exactly `spiffe`, the trust domain is lowercase
//! `[a-z0-9._-]`, path segments are non-empty, never `.` or `..`, and use only
//! `[A-Za-z0-9._-]`; no port, user info, query, fragment or percent-encoding.
//! A [`SpiffeId`] here always names a workload, so its path is never empty;
//! a trust domain on its own is a plain string checked by
//! [`validate_trust_domain`].

use std::fmt;
use std::str::FromStr;

/// The longest SPIFFE ID accepted (SPIFFE ID spec §2.3: URIs up to 2048 bytes).
const MAX_ID_LEN: usize = 2048;
/// The longest trust domain accepted (SPIFFE ID spec §2.1: 255 bytes).
const MAX_TRUST_DOMAIN_LEN: usize = 255;
const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID, trust domain or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{input:?} is not a spiffe id: it must start with spiffe://")]
    Scheme { input: String },
    #[error("{input:?} is not a spiffe id: the trust domain is empty")]
    EmptyTrustDomain { input: String },
    #[error(
        "{input:?} is not a spiffe id: trust domain character {ch:?} is not allowed (only a-z 0-9 . - _)"
    )]
    TrustDomainChar { input: String, ch: char },
    #[error("{input:?} is not a spiffe id: it is longer than {max} bytes")]
    TooLong { input: String, max: usize },
    #[error(
        "{input:?} has no path: a workload spiffe id needs one, e.g. spiffe://mesh.local/orders"
    )]
    MissingPath { input: String },
    #[error("{input:?} is not a spiffe id: it has an empty path segment")]
    EmptySegment { input: String },
    #[error("{input:?} is not a spiffe id: a path segment is \".\" or \"..\"")]
    DotSegment { input: String },
    #[error(
        "{input:?} is not a spiffe id: path character {ch:?} is not allowed (only A-Z a-z 0-9 . - _)"
    )]
    PathChar { input: String, ch: char },
    #[error("{input:?} is not a valid pattern: '*' and '**' must be a whole path segment")]
    PartialWildcard { input: String },
    #[error(
        "{input:?} is not a valid pattern: '**' (the rest of the path) may only be the last path segment"
    )]
    DoubleStarNotLast { input: String },
}

/// A workload identity: `spiffe://<trust-domain>/<path>` with a non-empty path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset of the `/` that starts the path.
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates a workload SPIFFE ID.
    pub fn parse(input: &str) -> Result<SpiffeId, SpiffeIdError> {
        let (trust_domain, path) = split(input)?;
        validate_td(input, trust_domain)?;
        if path.is_empty() {
            return Err(SpiffeIdError::MissingPath {
                input: input.to_owned(),
            });
        }
        for segment in path[1..].split('/') {
            validate_segment(input, segment)?;
        }
        Ok(SpiffeId {
            id: input.to_owned(),
            path_start: SCHEME.len() + trust_domain.len(),
        })
    }

    /// `spiffe://<trust_domain>/<path>`; `path` may or may not start with `/`.
    pub fn new(trust_domain: &str, path: &str) -> Result<SpiffeId, SpiffeIdError> {
        let path = path.strip_prefix('/').unwrap_or(path);
        SpiffeId::parse(&format!("{SCHEME}{trust_domain}/{path}"))
    }

    /// The identity an operator means by SERVICE on the command line: a full
    /// `spiffe://` ID as given, or a service name (or path such as
    /// `ns/prod/sa/orders`) in `trust_domain`.
    pub fn from_service(trust_domain: &str, service: &str) -> Result<SpiffeId, SpiffeIdError> {
        if service.starts_with(SCHEME) {
            SpiffeId::parse(service)
        } else {
            SpiffeId::new(trust_domain, service)
        }
    }

    /// The trust domain, e.g. `mesh.local`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The path including its leading `/`, e.g. `/ns/prod/sa/orders`.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The last path segment: the service name in `/ns/prod/sa/orders`.
    pub fn service_name(&self) -> &str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a bare trust domain such as `mesh.local`.
pub fn validate_trust_domain(trust_domain: &str) -> Result<(), SpiffeIdError> {
    validate_td(trust_domain, trust_domain)
}

/// An allow-list entry: a SPIFFE ID in which a path segment may be `*`,
/// matching exactly one whole segment (`spiffe://mesh.local/ns/*/sa/web`),
/// and the last segment may be `**`, matching one or more segments (the
/// rest of the path: `spiffe://mesh.local/**` is any workload of the trust
/// domain; `spiffe://mesh.local/ns/**` does not match
/// `spiffe://mesh.local/ns` itself). A pattern never matches an ID of
/// another trust domain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffePattern {
    pattern: String,
    trust_domain: String,
    segments: Vec<Segment>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**` (last only): one or more segments.
    Rest,
}

impl SpiffePattern {
    pub fn parse(input: &str) -> Result<SpiffePattern, SpiffeIdError> {
        let (trust_domain, path) = split(input)?;
        validate_td(input, trust_domain)?;
        if path.is_empty() {
            return Err(SpiffeIdError::MissingPath {
                input: input.to_owned(),
            });
        }
        let mut segments = Vec::new();
        for segment in path[1..].split('/') {
            if segments.last() == Some(&Segment::Rest) {
                return Err(SpiffeIdError::DoubleStarNotLast {
                    input: input.to_owned(),
                });
            }
            segments.push(match segment {
                "*" => Segment::One,
                "**" => Segment::Rest,
                s if s.contains('*') => {
                    return Err(SpiffeIdError::PartialWildcard {
                        input: input.to_owned(),
                    });
                }
                s => {
                    validate_segment(input, s)?;
                    Segment::Literal(s.to_owned())
                }
            });
        }
        Ok(SpiffePattern {
            pattern: input.to_owned(),
            trust_domain: trust_domain.to_owned(),
            segments,
        })
    }

    /// True when `id` is in the pattern's trust domain and its path
    /// segments match one by one: a literal the same segment, `*` any one
    /// segment, a final `**` whatever segments (at least one) remain.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        if id.trust_domain() != self.trust_domain {
            return false;
        }
        let path = id.path();
        let mut got = path.get(1..).unwrap_or_default().split('/');
        for want in &self.segments {
            let Some(got) = got.next() else {
                return false;
            };
            match want {
                Segment::Rest => return true,
                Segment::One => {}
                Segment::Literal(want) if want == got => {}
                Segment::Literal(_) => return false,
            }
        }
        got.next().is_none()
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True when the pattern has no `*` or `**` and so names exactly one ID.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }
}

impl fmt::Display for SpiffePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl fmt::Debug for SpiffePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffePattern({})", self.pattern)
    }
}

impl FromStr for SpiffePattern {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffePattern::parse(s)
    }
}

impl serde::Serialize for SpiffePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpiffePattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Splits `spiffe://td/path` into `td` and `/path` (empty when absent).
fn split(input: &str) -> Result<(&str, &str), SpiffeIdError> {
    if input.len() > MAX_ID_LEN {
        return Err(SpiffeIdError::TooLong {
            input: truncated(input),
            max: MAX_ID_LEN,
        });
    }
    let rest = input
        .strip_prefix(SCHEME)
        .ok_or_else(|| SpiffeIdError::Scheme {
            input: input.to_owned(),
        })?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    })
}

fn validate_td(input: &str, trust_domain: &str) -> Result<(), SpiffeIdError> {
    if trust_domain.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain {
            input: input.to_owned(),
        });
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TooLong {
            input: truncated(input),
            max: MAX_TRUST_DOMAIN_LEN,
        });
    }
    match trust_domain
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(ch) => Err(SpiffeIdError::TrustDomainChar {
            input: input.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

fn validate_segment(input: &str, segment: &str) -> Result<(), SpiffeIdError> {
    if segment.is_empty() {
        return Err(SpiffeIdError::EmptySegment {
            input: input.to_owned(),
        });
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdError::DotSegment {
            input: input.to_owned(),
        });
    }
    match segment
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(ch) => Err(SpiffeIdError::PathChar {
            input: input.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

/// Keeps error messages short when the input is huge.
fn truncated(input: &str) -> String {
    input.chars().take(64).chain("...".chars()).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
