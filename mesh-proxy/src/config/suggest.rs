//! "Did you mean" suggestions for misspelt keys, names and words.

/// The closest candidate to `word` (case-insensitively) if it is within
/// `max(1, len/3)` edits — insertions, deletions, substitutions and swaps
/// of two adjacent characters (optimal string alignment, over chars:
/// `strsim::osa_distance`); ties go to the earliest candidate.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
        .map(|candidate| {
            let lower = candidate.to_lowercase();
            (strsim::osa_distance(&word_lower, &lower), candidate)
        })
        .filter(|(dist, _)| *dist <= limit)
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, candidate)| candidate)
}

/// ` (did you mean "x"?)`, or an empty string when nothing is close.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match suggest(word, candidates) {
        Some(candidate) => format!(" (did you mean \"{candidate}\"?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_each_kind_of_edit() {
        // The distance `suggest` ranks by: what a typo costs.
        let distance = strsim::osa_distance;
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("payments", "payments"), 0);
        assert_eq!(distance("paymnts", "payments"), 1); // deletion
        assert_eq!(distance("paymentss", "payments"), 1); // insertion
        assert_eq!(distance("paymants", "payments"), 1); // substitution
        assert_eq!(distance("pyaments", "payments"), 1); // adjacent swap
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("héllo", "hello"), 1); // chars, not bytes
    }

    #[test]
    fn suggests_within_a_third_of_the_length() {
        let keys = ["listeners", "clusters", "limits"];
        assert_eq!(suggest("listners", keys), Some("listeners"));
        assert_eq!(suggest("clustrs", keys), Some("clusters"));
        assert_eq!(suggest("timout", ["timeout", "retry"]), Some("timeout"));
        assert_eq!(
            suggest("least_requests", ["round_robin", "least_request", "random"]),
            Some("least_request")
        );
        // short words still get one edit
        assert_eq!(suggest("lv", ["lb"]), Some("lb"));
        assert_eq!(suggest("xyz", keys), None);
        assert_eq!(suggest("tracing", keys), None);
    }

    #[test]
    fn suggestion_ignores_case_and_exact_matches() {
        assert_eq!(suggest("Random", ["random"]), Some("random"));
        assert_eq!(suggest("random", ["random"]), None);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(suggest("ab", ["ac", "ad"]), Some("ac"));
        assert_eq!(suggest("ab", ["ad", "ac"]), Some("ad"));
        // a closer later candidate beats an earlier farther one
        assert_eq!(suggest("abcdef", ["abcxyf", "abcdeg"]), Some("abcdeg"));
    }

    #[test]
    fn did_you_mean_formats_or_stays_empty() {
        assert_eq!(
            did_you_mean("paymnts", ["payments", "orders"]),
            " (did you mean \"payments\"?)"
        );
        assert_eq!(did_you_mean("zzz", ["payments"]), "");
    }
}
