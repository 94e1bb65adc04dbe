//! "Did you mean" suggestions for misspelt keys, names and words.

/// Edit distance counting insertions, deletions, substitutions and swaps of
/// two adjacent characters (optimal string alignment), over chars.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j] = distance between a[..i] and b[..j]
    let mut rows: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The closest candidate to `word` (case-insensitively) if it is within
/// `max(1, len/3)` edits; ties go to the earliest candidate.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
        .map(|candidate| (distance(&word_lower, &candidate.to_lowercase()), candidate))
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
