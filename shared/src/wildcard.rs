//! Case-insensitive wildcard matching for account search: `*` matches any
//! run of characters (including none), `?` exactly one character, anything
//! else itself, ignoring ASCII case.
//!
//! The matcher is the classic greedy scan with a single backtrack point: on
//! a mismatch it retries from the most recent `*`, letting that star swallow
//! one more character. Only the latest star matters, because any match an
//! earlier star could make is also reachable through a later one, so the run
//! time is O(pattern × text) in the worst case and linear in practice, with
//! no recursion and no allocation.

/// Whether `text` matches `pattern` in full.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last star seen, and the text position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((star, star_ti)) = backtrack {
            pi = star + 1;
            ti = star_ti + 1;
            backtrack = Some((star, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The literal text every match must start with (lowercased): the pattern up
/// to its first wildcard. Lets the server seek its sorted username index
/// instead of scanning all of it.
pub fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|&c| c != '*' && c != '?')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let cases = [
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("bob", "BOB", true),
            ("b?b", "bob", true),
            ("b?b", "bb", false),
            ("a*", "alice", true),
            ("*e", "alice", true),
            ("*li*", "alice", true),
            ("a*c*e", "alice", true),
            ("a*x*e", "alice", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("??", "abc", false),
            ("**?", "a", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(matches(p, t), want, "pattern {p:?} text {t:?}");
        }
        assert_eq!(literal_prefix("AbC*d?"), "abc");
        assert_eq!(literal_prefix("*x"), "");
    }

    /// Reference: the textbook recursive definition.
    fn reference(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some(_), None) => false,
            (Some(&pc), Some(&tc)) => (pc == '?' || pc == tc) && reference(&p[1..], &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(matches(&p, &t), reference(&pc, &tc));
        }

        #[test]
        fn matches_start_with_literal_prefix(p in "[ab]{0,3}[*?][ab*?]{0,4}", t in "[ab]{0,10}") {
            if matches(&p, &t) {
                prop_assert!(t.starts_with(&literal_prefix(&p)));
            }
        }
    }
}
