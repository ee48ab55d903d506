//! CEL expressions in policies: compiled once at load, evaluated per request (pure).
//!
//! Expressions run on the standard CEL library plus the strings and lists extensions. A result
//! that is not a bool, an evaluation error and even a panic inside the interpreter become a
//! [`CelError`], never a crash.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;

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
    /// The standard library with the strings and lists extensions.
    pub fn new() -> Self {
        let mut env = Env::stdlib();
        // The extensions are part of the crate; adding them to a fresh Env cannot conflict.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Self(Arc::new(env))
    }

    /// Compile an expression.
    pub fn compile(&self, source: &str) -> Result<Expression, CelError> {
        let compiled = catch_unwind(AssertUnwindSafe(|| self.0.compile(source)));
        match compiled {
            Ok(Ok(program)) => Ok(Expression {
                source: source.to_owned(),
                program: Arc::new(program),
                env: self.clone(),
            }),
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

    /// Evaluate with the given JSON variables; the result must be a bool.
    pub fn eval_bool(&self, variables: &[(&str, &Value)]) -> Result<bool, CelError> {
        let mut context = Context::with_env(Arc::clone(&self.env.0));
        for (name, value) in variables {
            let value = cel::to_value(value)
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
}
