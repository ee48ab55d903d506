//! CEL expressions in policies: compiled once at load, evaluated per request (pure).
//!
//! Expressions run on the standard CEL library plus the strings and lists extensions and the
//! portcullis helpers below. A result that is not a bool, an evaluation error and even a panic
//! inside the interpreter become a [`CelError`], never a crash.
//!
//! Helpers, available to every expression:
//!
//! - `semverCompare(a, b)`: `-1`, `0` or `1` by SemVer precedence (leading `v` and a missing
//!   minor/patch tolerated: `v2.14` is `2.14.0`);
//! - `semverLess(a, b)`: `semverCompare(a, b) < 0`;
//! - `semverMatches(version, range)`: `range` like `">=2.15.0 <3"` or `"<1 || >=2"`;
//! - `semverValid(text)`: whether `text` parses as a version (never an error);
//! - `now`: the evaluation time as a `timestamp`, bound by [`Expression::eval_bool_at`], e.g.
//!   `timestamp(predicate.metadata.scanFinishedOn) > now - duration('168h')`.
//!
//! An invalid version or range is an evaluation error naming the value.

mod semver;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel::common::types::{CelBool, CelInt, CelString};
use cel::{Context, DeclarationError, Env, ExecutionError, Program, Value as CelValue};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use self::semver::SemverError;

/// The variable [`Expression::eval_bool_at`] binds to the evaluation time.
pub const NOW: &str = "now";

/// The shared CEL environment expressions are compiled and run with.
#[derive(Clone)]
pub struct CelEnv(Arc<Env>);

impl std::fmt::Debug for CelEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CelEnv")
    }
}

/// A compiled CEL expression with its source text.
#[derive(Clone)]
pub struct Expression {
    source: String,
    program: Arc<Program>,
    env: CelEnv,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// Why an expression did not compile or did not yield a bool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelError {
    #[error("CEL expression `{expression}` does not compile: {message}")]
    Compile { expression: String, message: String },
    #[error("CEL expression `{expression}` failed: {message}")]
    Eval { expression: String, message: String },
    #[error("CEL expression `{expression}` returned {found}, expected a bool")]
    NotBool { expression: String, found: String },
    #[error("variable {name} cannot be passed to CEL: {message}")]
    Variable { name: String, message: String },
}

impl Default for CelEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl CelEnv {
    /// The standard library with the strings and lists extensions and the portcullis helpers.
    pub fn new() -> Self {
        let mut env = Env::stdlib();
        // The extensions are part of the crate and the helpers' names are ours; adding them to a
        // fresh Env cannot conflict (the tests call every one of them).
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let helpers = add_helpers(&mut env);
        debug_assert_eq!(helpers, Ok(()));
        Self(Arc::new(env))
    }

    /// Compile an expression.
    pub fn compile(&self, source: &str) -> Result<Expression, CelError> {
        let compiled = catch_unwind(AssertUnwindSafe(|| self.0.compile(source)));
        match compiled {
            Ok(Ok(program)) => {
                Ok(Expression { source: source.to_owned(), program: Arc::new(program), env: self.clone() })
            }
            Ok(Err(errors)) => Err(CelError::Compile { expression: source.to_owned(), message: errors.to_string() }),
            Err(_) => Err(CelError::Compile {
                expression: source.to_owned(),
                message: "the CEL parser panicked on this expression".to_owned(),
            }),
        }
    }
}

impl Expression {
    /// The expression as written in the policy.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate with the given JSON variables, `now` being the current time; the result must be
    /// a bool.
    pub fn eval_bool(&self, variables: &[(&str, &Value)]) -> Result<bool, CelError> {
        self.eval_bool_at(variables, Utc::now())
    }

    /// Evaluate with the given JSON variables and `now` bound to the timestamp `now`; the result
    /// must be a bool. `now` is reserved: passing a variable of that name is an error.
    pub fn eval_bool_at(&self, variables: &[(&str, &Value)], now: DateTime<Utc>) -> Result<bool, CelError> {
        let mut context = Context::with_env(Arc::clone(&self.env.0));
        context.add_variable_from_value(NOW, CelValue::Timestamp(now.fixed_offset()));
        for (name, value) in variables {
            if *name == NOW {
                return Err(CelError::Variable {
                    name: NOW.to_owned(),
                    message: "`now` is bound to the evaluation time; pass it as the `now` argument".to_owned(),
                });
            }
            let value = cel::to_value(IntFirst(value))
                .map_err(|e| CelError::Variable { name: (*name).to_owned(), message: e.to_string() })?;
            context.add_variable_from_value(*name, value);
        }
        let result = catch_unwind(AssertUnwindSafe(|| self.program.execute(&context)));
        match result {
            Ok(Ok(CelValue::Bool(b))) => Ok(b),
            Ok(Ok(other)) => Err(CelError::NotBool { expression: self.source.clone(), found: describe(&other) }),
            Ok(Err(e)) => Err(CelError::Eval { expression: self.source.clone(), message: e.to_string() }),
            Err(_) => Err(CelError::Eval {
                expression: self.source.clone(),
                message: "the CEL interpreter panicked".to_owned(),
            }),
        }
    }
}

/// JSON → CEL with integers as `int` (as Kubernetes CEL does), not `uint`: serde_json hands
/// positive integers to serializers as u64, which would make `object.spec.replicas + 1` an
/// overload error.
struct IntFirst<'a>(&'a Value);

impl serde::Serialize for IntFirst<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => serializer.serialize_i64(i),
                (None, Some(u), _) => serializer.serialize_u64(u),
                (_, _, Some(f)) => serializer.serialize_f64(f),
                _ => serializer.serialize_none(),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&IntFirst(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &IntFirst(v))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Register the portcullis helpers (see the module documentation).
fn add_helpers(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn semver_compare: (CelString, CelString) -> Result<CelInt>)?;
    cel::add_overload!(env, fn semver_less: (CelString, CelString) -> Result<CelBool>)?;
    cel::add_overload!(env, fn semver_matches: (CelString, CelString) -> Result<CelBool>)?;
    cel::add_overload!(env, fn semver_valid: (CelString) -> CelBool)?;
    Ok(())
}

fn semver_error(function: &str, error: SemverError) -> ExecutionError {
    ExecutionError::function_error(function, error)
}

fn semver_compare(a: &CelString<'_>, b: &CelString<'_>) -> Result<CelInt, ExecutionError> {
    let order = semver::compare(a.inner(), b.inner()).map_err(|e| semver_error("semverCompare", e))?;
    Ok(CelInt::from(order as i64))
}

fn semver_less(a: &CelString<'_>, b: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let order = semver::compare(a.inner(), b.inner()).map_err(|e| semver_error("semverLess", e))?;
    Ok(CelBool::from(order.is_lt()))
}

fn semver_matches(version: &CelString<'_>, range: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let found = semver::matches(version.inner(), range.inner()).map_err(|e| semver_error("semverMatches", e))?;
    Ok(CelBool::from(found))
}

fn semver_valid(text: &CelString<'_>) -> CelBool {
    CelBool::from(semver::parse(text.inner()).is_ok())
}

fn describe(value: &CelValue) -> String {
    let text = format!("{value:?}");
    if text.len() > 80 { format!("{}…", &text[..text.floor_char_boundary(80)]) } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn evaluates_over_json() {
        let env = CelEnv::new();
        let object = json!({"metadata": {"labels": {"team": "payments"}}, "spec": {"replicas": 3}});
        let request = json!({"userInfo": {"username": "alice", "groups": ["dev"]}, "operation": "CREATE"});
        let vars = [("object", &object), ("request", &request)];
        let t = |src: &str| env.compile(src).expect(src).eval_bool(&vars);
        assert_eq!(t("object.metadata.labels.team == 'payments'"), Ok(true));
        assert_eq!(t("object.spec.replicas <= 2"), Ok(false));
        assert_eq!(t("object.spec.replicas + 1 == 4"), Ok(true));
        assert_eq!(t("has(object.metadata.labels.owner)"), Ok(false));
        assert_eq!(t("'dev' in request.userInfo.groups"), Ok(true));
        assert_eq!(t("request.userInfo.username.startsWith('al')"), Ok(true));
        assert_eq!(t("request.userInfo.username.lowerAscii() == 'alice'"), Ok(true));
    }

    #[test]
    fn errors_are_values() {
        let env = CelEnv::new();
        let object = json!({"a": 1});
        let vars = [("object", &object)];
        assert!(matches!(env.compile("object.a =="), Err(CelError::Compile { .. })));
        let missing = env.compile("object.b == 1").expect("compiles").eval_bool(&vars);
        assert!(matches!(missing, Err(CelError::Eval { .. })), "{missing:?}");
        let not_bool = env.compile("object.a + 1").expect("compiles").eval_bool(&vars);
        assert!(matches!(not_bool, Err(CelError::NotBool { .. })), "{not_bool:?}");
        let unknown = env.compile("nope == 1").expect("compiles").eval_bool(&vars);
        assert!(matches!(unknown, Err(CelError::Eval { .. })), "{unknown:?}");
    }

    #[test]
    fn semver_helpers() {
        let env = CelEnv::new();
        let package = json!({"name": "log4j-core", "version": "2.14.1"});
        let vars = [("p", &package)];
        let t = |src: &str| env.compile(src).expect(src).eval_bool(&vars);
        assert_eq!(t("semverCompare('1.2.3', '1.10.0') == -1"), Ok(true));
        assert_eq!(t("semverCompare('v2.14', '2.14.0') == 0"), Ok(true));
        assert_eq!(t("semverCompare('1.0.0', '1.0.0-rc.1') == 1"), Ok(true));
        assert_eq!(t("semverLess(p.version, '2.17.1')"), Ok(true));
        assert_eq!(t("semverLess('2.17.1', p.version)"), Ok(false));
        assert_eq!(t("semverMatches(p.version, '>=2.0.0 <2.15.0')"), Ok(true));
        assert_eq!(t("semverMatches(p.version, '>=2.15.0, <3 || <1')"), Ok(false));
        assert_eq!(t("semverValid(p.version) && !semverValid('2.x')"), Ok(true));
        // `&&` short-circuits: an unparsable version of another package is never compared.
        assert_eq!(t("p.name == 'other' && semverLess('junk', '1.0.0')"), Ok(false));
    }

    #[test]
    fn semver_errors_are_values() {
        let env = CelEnv::new();
        let vars: [(&str, &Value); 0] = [];
        let t = |src: &str| env.compile(src).expect(src).eval_bool(&vars);
        for (src, named) in [
            ("semverLess('1.2.3.Final', '2.0.0')", "1.2.3.Final"),
            ("semverCompare('1.0.0', 'latest') == 0", "latest"),
            ("semverMatches('1.0.0', '^1.0')", "^1.0"),
            ("semverMatches('x1', '>=1')", "x1"),
        ] {
            match t(src) {
                Err(CelError::Eval { message, .. }) => assert!(message.contains(named), "{src}: {message}"),
                other => panic!("{src}: expected an evaluation error, got {other:?}"),
            }
        }
        assert!(matches!(t("semverLess(1, 2)"), Err(CelError::Eval { .. })), "ints are not versions");
        assert!(matches!(t("semverLess('1.0.0')"), Err(CelError::Eval { .. })), "arity");
    }

    #[test]
    fn now_is_a_timestamp() {
        let env = CelEnv::new();
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").expect("time").with_timezone(&Utc);
        let predicate = json!({"metadata": {"scanFinishedOn": "2026-11-20T08:30:00Z"}, "old": "2026-11-01T00:00:00Z"});
        let vars = [("predicate", &predicate)];
        let t = |src: &str| env.compile(src).expect(src).eval_bool_at(&vars, now);
        assert_eq!(t("now == timestamp('2026-11-22T12:00:00Z')"), Ok(true));
        assert_eq!(t("timestamp(predicate.metadata.scanFinishedOn) > now - duration('168h')"), Ok(true));
        assert_eq!(t("timestamp(predicate.old) > now - duration('168h')"), Ok(false));
        assert_eq!(t("now - timestamp(predicate.metadata.scanFinishedOn) < duration('72h')"), Ok(true));
        let bad = t("timestamp('yesterday') < now");
        assert!(matches!(bad, Err(CelError::Eval { .. })), "{bad:?}");
        // eval_bool binds the current time.
        let current = env.compile("now > timestamp('2026-01-01T00:00:00Z')").expect("compiles").eval_bool(&vars);
        assert_eq!(current, Ok(true));
        // `now` cannot be shadowed by a JSON variable.
        let shadow = json!("2020-01-01T00:00:00Z");
        let shadowed = env.compile("true").expect("compiles").eval_bool_at(&[("now", &shadow)], now);
        assert!(matches!(shadowed, Err(CelError::Variable { .. })), "{shadowed:?}");
    }
}
