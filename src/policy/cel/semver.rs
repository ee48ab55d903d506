//! Semantic versions for policy conditions (pure): lenient parsing, SemVer 2.0.0 precedence and
//! simple ranges.
//!
//! Parsing tolerates what SBOMs and tags commonly carry: one leading `v` (`v1.2.3`) and a missing
//! minor or patch (`2.14` is `2.14.0`, `3` is `3.0.0`). Everything else follows SemVer 2.0.0:
//! pre-releases sort before their release (`1.0.0-rc.1 < 1.0.0`), numeric identifiers compare as
//! numbers, build metadata (`+build.5`) is ignored by comparisons. Anything else (`1.2.3.4`,
//! `1.2.3.Final`, `2.x`) is an error naming the value, never a guess.
//!
//! Ranges are comparators combined explicitly: `>=2.15.0 <3` (whitespace or commas: AND),
//! `<1.0.0 || >=2.0.0` (OR). Operators are `=`/`==`, `!=`, `<`, `<=`, `>`, `>=`; a bare version
//! means `=`; `*` matches every version. Comparators use plain precedence: `<3` includes
//! `3.0.0-rc.1` (unlike npm, pre-releases are not excluded). Caret and tilde ranges are
//! rejected rather than given one ecosystem's meaning.

use std::cmp::Ordering;

use semver::Version;

/// Longest version or range accepted, in bytes.
const MAX_LEN: usize = 256;

/// Why a version or a range could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SemverError {
    #[error("{value:?} is not a semantic version: {message}")]
    Version { value: String, message: String },
    #[error("{value:?} is not a version range: {message}")]
    Range { value: String, message: String },
}

/// Parse a version leniently (see the module documentation).
pub fn parse(text: &str) -> Result<Version, SemverError> {
    let invalid = |message: &str| SemverError::Version { value: shorten(text), message: message.to_owned() };
    if text.len() > MAX_LEN {
        return Err(invalid("longer than 256 bytes"));
    }
    let trimmed = text.trim();
    let unprefixed = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    let split = unprefixed.find(['-', '+']).unwrap_or(unprefixed.len());
    let (core, suffix) = unprefixed.split_at(split);
    if core.is_empty() {
        return Err(invalid("no version number"));
    }
    let padding = match core.split('.').count() {
        1 => ".0.0",
        2 => ".0",
        3 => "",
        _ => return Err(invalid("more than three numeric parts (major.minor.patch)")),
    };
    Version::parse(&format!("{core}{padding}{suffix}")).map_err(|e| invalid(&e.to_string()))
}

/// Compare two versions by SemVer precedence (build metadata ignored).
pub fn compare(a: &str, b: &str) -> Result<Ordering, SemverError> {
    Ok(precedence(&parse(a)?, &parse(b)?))
}

fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch).cmp(&(b.major, b.minor, b.patch)).then_with(|| a.pre.cmp(&b.pre))
}

/// Whether `version` satisfies `range` (see the module documentation for the syntax). The range
/// is checked whole before the version is compared, so a bad range is an error for every version.
pub fn matches(version: &str, range: &str) -> Result<bool, SemverError> {
    let alternatives = parse_range(range)?;
    let version = parse(version)?;
    Ok(alternatives.iter().any(|all| {
        all.iter().all(|(op, bound)| {
            let order = precedence(&version, bound);
            match op {
                Op::Eq => order == Ordering::Equal,
                Op::Ne => order != Ordering::Equal,
                Op::Lt => order == Ordering::Less,
                Op::Le => order != Ordering::Greater,
                Op::Gt => order == Ordering::Greater,
                Op::Ge => order != Ordering::Less,
            }
        })
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Longest first, so `>=` is not read as `>` followed by `=1.0`.
const OPERATORS: [(&str, Op); 7] =
    [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt), ("=", Op::Eq)];

/// A range as OR-ed lists of AND-ed comparators. `*` is an empty (always true) list.
fn parse_range(range: &str) -> Result<Vec<Vec<(Op, Version)>>, SemverError> {
    let invalid = |message: String| SemverError::Range { value: shorten(range), message };
    if range.len() > MAX_LEN {
        return Err(invalid("longer than 256 bytes".to_owned()));
    }
    let mut alternatives = Vec::new();
    for alternative in range.split("||") {
        let mut tokens = alternative.split([' ', '\t', ',']).filter(|t| !t.is_empty());
        let mut comparators = Vec::new();
        let mut any = false;
        while let Some(token) = tokens.next() {
            if token == "*" {
                any = true;
                continue;
            }
            if token.starts_with(['^', '~']) {
                return Err(invalid(format!(
                    "{token:?}: caret and tilde ranges are not supported; write bounds such as >=1.2.0 <2.0.0"
                )));
            }
            let (op, rest) = OPERATORS
                .iter()
                .find_map(|(text, op)| token.strip_prefix(text).map(|rest| (*op, rest)))
                .unwrap_or((Op::Eq, token));
            // An operator may stand apart from its version: `>= 2.15.0`.
            let version = if rest.is_empty() {
                tokens.next().ok_or_else(|| invalid(format!("{token:?} is not followed by a version")))?
            } else {
                rest
            };
            comparators.push((op, parse(version).map_err(|e| invalid(e.to_string()))?));
        }
        if comparators.is_empty() && !any {
            return Err(invalid("empty comparator list (use * for any version)".to_owned()));
        }
        alternatives.push(comparators);
    }
    Ok(alternatives)
}

/// A value quoted in an error, cut to a readable length.
fn shorten(text: &str) -> String {
    if text.len() > 64 { format!("{}…", &text[..text.floor_char_boundary(64)]) } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parsing() {
        for (text, expected) in [
            ("1.2.3", "1.2.3"),
            ("v1.2.3", "1.2.3"),
            ("V2.14", "2.14.0"),
            ("2.14", "2.14.0"),
            ("3", "3.0.0"),
            (" 1.0.0 ", "1.0.0"),
            ("2.14-rc1", "2.14.0-rc1"),
            ("1+build.5", "1.0.0+build.5"),
            ("1.0.0-alpha.1+sha.5114f85", "1.0.0-alpha.1+sha.5114f85"),
        ] {
            assert_eq!(parse(text).map(|v| v.to_string()), Ok(expected.to_owned()), "{text}");
        }
        for bad in ["", "v", "1.2.3.4", "1.2.3.Final", "2.x", "latest", "01.2.3", "1.2.3-", "-1", "1..2"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "the error names the value: {err}");
        }
        assert!(parse(&"1".repeat(300)).is_err());
    }

    #[test]
    fn precedence_follows_semver() {
        // The SemVer 2.0.0 specification's example, in increasing order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1",
            "2",
            "2.10.0",
        ];
        for pair in chain.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Ok(Ordering::Less), "{pair:?}");
            assert_eq!(compare(pair[1], pair[0]), Ok(Ordering::Greater), "{pair:?}");
        }
        assert_eq!(compare("v2.14", "2.14.0"), Ok(Ordering::Equal));
        assert_eq!(compare("1.0.0+build.1", "1.0.0+build.2"), Ok(Ordering::Equal), "build metadata is ignored");
        assert!(compare("1.0.0", "nope").is_err());
    }

    #[test]
    fn ranges() {
        let yes = [
            ("2.15.0", ">=2.15.0 <3"),
            ("2.99.1", ">=2.15.0, <3"),
            ("2.17.0", ">= 2.15.0 < 3"),
            ("3.0.0-rc.1", "<3"),
            ("1.2.3", "1.2.3"),
            ("1.2.3", "=v1.2.3"),
            ("1.2.4", "!=1.2.3"),
            ("0.9.0", "<1.0.0 || >=2.0.0"),
            ("2.0.0", "<1.0.0 || >=2.0.0"),
            ("7.0.0", "*"),
            ("1.0.0", "<=1"),
            ("1.0.1", ">1"),
        ];
        for (version, range) in yes {
            assert_eq!(matches(version, range), Ok(true), "{version} in {range}");
        }
        let no = [
            ("2.14.1", ">=2.15.0 <3"),
            ("3.0.0", ">=2.15.0 <3"),
            ("1.5.0", "<1.0.0 || >=2.0.0"),
            ("1.2.3", "!=1.2.3"),
            ("1.0.0-rc.1", ">=1.0.0"),
        ];
        for (version, range) in no {
            assert_eq!(matches(version, range), Ok(false), "{version} not in {range}");
        }
        for bad in ["", "   ", ">=", "^1.2", "~1.2", ">=1.2.3 ||", "2.x", ">>1"] {
            let err = matches("1.0.0", bad).expect_err(bad);
            assert!(matches!(err, SemverError::Range { .. }), "{bad:?}: {err}");
        }
        assert!(matches!(matches("not-a-version", ">=1"), Err(SemverError::Version { .. })));
    }
}
