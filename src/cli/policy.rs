//! `portcullis policy`: tools for policy files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR};
use crate::policy::cel::CelEnv;
use crate::policy::lint::{self, RULES, Severity};
use crate::policy::load::{LoadError, PolicyDir};

/// Flags of `portcullis policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// `portcullis policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the JSON Schema of the policy format (committed as policies/policy.schema.json;
    /// editors read it from a `# yaml-language-server: $schema=./policy.schema.json` line).
    Schema,
    /// Find policy mistakes the loader accepts (too broad identities, dead globs, conflicting
    /// modes, ...). Exit 0 clean (warnings allowed), 1 errors (or warnings with --strict),
    /// 2 the directory could not be read.
    Lint(LintArgs),
    /// Run the `kind: PolicyTest` cases found in DIR (e.g. DIR/tests/*.yaml) through the
    /// webhook's engine with DIR's policies. Exit 0 every case run passed, 1 a case failed,
    /// 2 the policies or cases could not be read.
    Test(super::policy_test::TestArgs),
    /// Sign a policy directory for `serve|verify --require-signed-policies`: writes
    /// DIR/policyset.manifest (every file, sorted by path, with its sha256) and
    /// DIR/policyset.sig (cosign sign-blob's signature format over the manifest).
    Sign(super::policy_sign::SignArgs),
}

/// Flags of `portcullis policy lint`.
#[derive(Debug, Args)]
#[command(after_help = lint_rules_help())]
pub struct LintArgs {
    /// The policy directory (as `serve --policies`).
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// Silence a rule everywhere (RULE) or for one policy (RULE:POLICY). Repeatable. In a policy,
    /// the annotation `portcullis.dev/lint-ignore: "RULE, RULE"` does the same.
    #[arg(long, value_name = "RULE[:POLICY]")]
    pub ignore: Vec<String>,
}

fn lint_rules_help() -> String {
    let mut help = String::from("Rules:\n");
    for (id, severity, what) in RULES {
        help.push_str(&format!("  {id:<20} {severity:<8} {what}\n"));
    }
    help
}

/// Run `portcullis policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Schema => print!("{}", crate::policy::schema::schema_text()),
        PolicyCommand::Lint(args) => return Ok(ExitCode::from(run_lint(&args))),
        PolicyCommand::Test(args) => return super::policy_test::run(&args),
        PolicyCommand::Sign(args) => return super::policy_sign::run(&args),
    }
    Ok(ExitCode::from(EXIT_ALLOWED))
}

fn run_lint(args: &LintArgs) -> u8 {
    for ignore in &args.ignore {
        let rule = ignore.split_once(':').map_or(ignore.as_str(), |(rule, _)| rule);
        if !RULES.iter().any(|(id, ..)| *id == rule) {
            let known: Vec<&str> = RULES.iter().map(|(id, ..)| *id).collect();
            eprintln!("error: --ignore {ignore:?}: no rule {rule:?}; the rules are {}", known.join(", "));
            return EXIT_ERROR;
        }
    }
    let dir = PolicyDir::new(&args.dir);
    let texts = match dir.policy_texts() {
        Ok(texts) => texts,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERROR;
        }
    };
    // What the server would refuse to load comes first: nothing else is worth checking then.
    if let Err(e) = dir.load() {
        let code = match e {
            LoadError::Missing(_) | LoadError::NotADirectory(_) | LoadError::Io { .. } => EXIT_ERROR,
            _ => EXIT_DENIED,
        };
        println!("error[invalid]: {e}");
        println!("the policies do not load (serve would refuse them); fix this first");
        return code;
    }
    let mut docs = Vec::new();
    let mut objects = Vec::new();
    for (path, text) in &texts {
        objects.extend(lint::test_objects(text));
        match lint::parse_docs(text, &path.display().to_string()) {
            Ok(parsed) => docs.extend(parsed),
            Err(e) => {
                println!("error[invalid]: {e}");
                return EXIT_DENIED;
            }
        }
    }
    let found = lint::lint(&docs, &args.ignore, &CelEnv::new(), &objects);
    for finding in &found {
        println!("{finding}");
    }
    let errors = found.iter().filter(|l| l.severity == Severity::Error).count();
    let warnings = found.len() - errors;
    println!("{} policies: {errors} errors, {warnings} warnings", docs.len());
    if errors > 0 || (args.strict && warnings > 0) { EXIT_DENIED } else { EXIT_ALLOWED }
}
