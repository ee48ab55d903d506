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

pub mod budget;
pub mod semver;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp, CelUInt,
};
use cel::common::value::Val;
use cel::{Context, DeclarationError, Env, ExecutionError, IdedExpr, Value as CelValue};
use chrono::{DateTime, Utc};
use serde_json::Value;

use self::budget::{MAX_COST, Metered, Overrun};
use self::semver::SemverError;

/// Longest expression source accepted.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Most AST nodes an expression may have once its macros are expanded.
pub const MAX_NODES: usize = 5_000;

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
    /// The parsed expression, instrumented with `@cost` (see [`budget`]).
    program: Arc<IdedExpr>,
    /// The tree's depth: up to [`INLINE_DEPTH`] it is evaluated on the caller's stack.
    depth: usize,
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
    #[error(
        "CEL expression `{expression}` exceeded its evaluation budget of {limit} units (it iterates or copies \
         too much: nested comprehensions over large lists, values that grow at each step); simplify it"
    )]
    Budget { expression: String, limit: u64 },
    #[error("CEL expression `{expression}` did not finish before the review deadline")]
    Deadline { expression: String },
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
        let helpers = add_helpers(&mut env).and_then(|()| budget::register(&mut env));
        debug_assert_eq!(helpers, Ok(()));
        Self(Arc::new(env))
    }

    /// Compile an expression: at most [`MAX_SOURCE_BYTES`] long and [`MAX_NODES`] nodes once its
    /// macros are expanded; the result is metered when it runs (see [`budget`]).
    pub fn compile(&self, source: &str) -> Result<Expression, CelError> {
        let refuse = |message: String| CelError::Compile { expression: describe_source(source), message };
        if source.len() > MAX_SOURCE_BYTES {
            return Err(refuse(format!(
                "it is {} bytes long, more than the {MAX_SOURCE_BYTES} accepted; split it into several rules",
                source.len()
            )));
        }
        let parser = self.0.parser();
        let compiled = on_large_stack(|| catch_unwind(AssertUnwindSafe(|| parser.parse(source))));
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(message) => return Err(refuse(message)),
        };
        match compiled {
            Ok(Ok(mut program)) => {
                let nodes = budget::node_count(&program);
                if nodes > MAX_NODES {
                    return Err(refuse(format!(
                        "it has {nodes} nodes once its macros are expanded, more than the {MAX_NODES} accepted; \
                         split it into several rules"
                    )));
                }
                budget::instrument(&mut program);
                let depth = budget::depth(&program);
                Ok(Expression { source: source.to_owned(), program: Arc::new(program), depth, env: self.clone() })
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
    /// The environment the expression was compiled with (to bind variables once for several
    /// expressions).
    pub fn env(&self) -> &CelEnv {
        &self.env
    }

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
    /// must be a bool. `now` is reserved: passing a variable of that name is an error. To
    /// evaluate several expressions over the same (large) documents, [`CelEnv::bind`] them once
    /// and use [`Expression::eval_bool_in`].
    pub fn eval_bool_at(&self, variables: &[(&str, &Value)], now: DateTime<Utc>) -> Result<bool, CelError> {
        self.eval_bool_in(&self.env.bind(variables, now)?)
    }

    /// Evaluate against variables bound once with [`CelEnv::bind`]; the result must be a bool.
    pub fn eval_bool_in(&self, bindings: &Bindings<'_>) -> Result<bool, CelError> {
        let run = || {
            let meter = Metered::start(MAX_COST, bindings.deadline);
            let result = catch_unwind(AssertUnwindSafe(|| CelValue::resolve(&self.program, &bindings.context)));
            (result, meter.overrun())
        };
        // Shallow expressions (every example policy's) run where they are: a thread per
        // evaluation costs ~80 µs; deep ones get the large stack the interpreter's recursion needs.
        let (result, overrun) = if self.depth <= INLINE_DEPTH {
            run()
        } else {
            on_large_stack(run).map_err(|message| CelError::Eval { expression: self.source.clone(), message })?
        };
        match overrun {
            Some(Overrun::Cost) => return Err(CelError::Budget { expression: self.source.clone(), limit: MAX_COST }),
            Some(Overrun::Deadline) => return Err(CelError::Deadline { expression: self.source.clone() }),
            None => {}
        }
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

/// JSON variables and `now`, converted to CEL once and borrowed from the JSON (strings are not
/// copied), to evaluate any number of expressions against. Converting dominates the cost of a
/// condition over a large document (an SBOM of many thousand packages), so the conditions of
/// one attestation should share one `Bindings`.
pub struct Bindings<'v> {
    context: Context<'v, 'v>,
    deadline: Option<Instant>,
}

impl Bindings<'_> {
    /// Stop every evaluation over these bindings at `deadline` (an error, never a result).
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl std::fmt::Debug for Bindings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bindings")
    }
}

/// Deepest JSON nesting passed to CEL.
const MAX_JSON_DEPTH: usize = 256;

impl CelEnv {
    /// Convert JSON variables for evaluation, with `now` bound to the timestamp `now` (a
    /// variable named `now` is an error). JSON integers become CEL `int` (as in Kubernetes CEL;
    /// one beyond the `int` range becomes `uint`), other numbers `double`.
    pub fn bind<'v>(&self, variables: &[(&str, &'v Value)], now: DateTime<Utc>) -> Result<Bindings<'v>, CelError> {
        let mut context = Context::with_env(Arc::clone(&self.0));
        context.add_variable_as_val(NOW, Box::new(CelTimestamp::from(now.fixed_offset())));
        for (name, value) in variables {
            let error = |message: String| CelError::Variable { name: (*name).to_owned(), message };
            if *name == NOW {
                return Err(error("`now` is bound to the evaluation time; pass it as the `now` argument".to_owned()));
            }
            context.add_variable_as_val(*name, json_to_cel(value, 0).map_err(error)?);
        }
        Ok(Bindings { context, deadline: None })
    }
}

/// JSON → CEL, borrowing strings and map keys.
fn json_to_cel(value: &Value, depth: usize) -> Result<Box<dyn Val + '_>, String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!("nested more than {MAX_JSON_DEPTH} levels deep"));
    }
    Ok(match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Box::new(CelInt::from(i)),
            (None, Some(u), _) => Box::new(CelUInt::from(u)),
            (_, _, Some(f)) => Box::new(CelDouble::from(f)),
            _ => Box::new(CelNull),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            let items = items.iter().map(|item| json_to_cel(item, depth + 1)).collect::<Result<Vec<_>, _>>()?;
            Box::new(CelList::from(items))
        }
        Value::Object(fields) => {
            let fields = fields
                .iter()
                .map(|(k, v)| Ok((CelMapKey::from(k.as_str()), json_to_cel(v, depth + 1)?)))
                .collect::<Result<HashMap<_, _>, String>>()?;
            Box::new(CelMap::from(fields))
        }
    })
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

/// Stack of the thread expressions are parsed and evaluated on: the parser and the interpreter
/// recurse once per level of nesting, with frames far larger than an async worker's 2 MiB stack
/// allows at the nesting the parser accepts (measured in a debug build, where frames are largest).
const CEL_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Deepest expression tree (metering included) evaluated on the caller's stack. Measured in a
/// debug build on a 2 MiB stack (an async worker's): a tree of depth 51 evaluated, 67 overflowed;
/// the example policies' expressions are 4 to 14 deep.
const INLINE_DEPTH: usize = 24;

/// Run `f` on a thread of its own with [`CEL_STACK_BYTES`] of stack (reserved, touched only as
/// deep as the expression goes), waiting for it: the cost budget and the deadline bound the wait.
fn on_large_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("portcullis-cel".to_owned())
            .stack_size(CEL_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("cannot start a thread to run it: {e}"))?;
        thread.join().map_err(|_| "the CEL interpreter panicked".to_owned())
    })
}

/// An expression too long to repeat whole in a message.
fn describe_source(source: &str) -> String {
    if source.len() > 200 { format!("{}…", &source[..source.floor_char_boundary(200)]) } else { source.to_owned() }
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

    #[test]
    fn bindings_are_converted_once_and_shared() {
        let env = CelEnv::new();
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").expect("time").with_timezone(&Utc);
        let doc = json!({
            "n": 3, "neg": -2, "big": u64::MAX, "f": 1.5, "t": true, "z": null, "s": "x",
            "list": [1, "a", [2]], "map": {"k": {"deep": [{"v": 1}]}}
        });
        let bindings = env.bind(&[("doc", &doc)], now).expect("binds");
        fn shareable<T: Send + Sync>(_: &T) {}
        shareable(&bindings);
        let t = |src: &str| env.compile(src).expect(src).eval_bool_in(&bindings);
        assert_eq!(t("doc.n + 1 == 4 && doc.neg < 0 && type(doc.n) == int"), Ok(true));
        assert_eq!(t("doc.big == 18446744073709551615u && type(doc.big) == uint"), Ok(true));
        assert_eq!(t("doc.f == 1.5 && doc.t && doc.z == null && doc.s == 'x'"), Ok(true));
        assert_eq!(t("doc.list.size() == 3 && doc.list[2][0] == 2 && 'a' in doc.list"), Ok(true));
        assert_eq!(t("doc.map.k.deep[0].v == 1 && has(doc.map.k) && !has(doc.map.q)"), Ok(true));
        assert_eq!(t("'k' in doc.map && doc.map.size() == 1"), Ok(true));
        assert_eq!(t("now == timestamp('2026-11-22T12:00:00Z')"), Ok(true));
        assert!(matches!(t("doc.nope"), Err(CelError::Eval { .. })));

        let mut deep = json!(1);
        for _ in 0..300 {
            deep = json!([deep]);
        }
        let too_deep = env.bind(&[("deep", &deep)], now);
        assert!(matches!(too_deep, Err(CelError::Variable { ref name, .. }) if name == "deep"), "{too_deep:?}");
    }
}
