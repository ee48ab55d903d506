//! The cost bound: exploding expressions stop with an error, in bounded time; ordinary ones keep
//! their meaning (each exploding case is its own test).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::policy::cel::{CelEnv, CelError, MAX_NODES, MAX_SOURCE_BYTES};

fn eval(source: &str, vars: &[(&str, &Value)]) -> Result<bool, CelError> {
    let env = CelEnv::new();
    let expression = env.compile(source).expect(source);
    let bindings = env.bind(vars, Utc::now()).expect("binds");
    expression.eval_bool_in(&bindings)
}

/// `source` stops with the budget error, within `seconds` (a debug build).
fn exceeds_budget(source: &str, vars: &[(&str, &Value)]) {
    let started = Instant::now();
    let result = eval(source, vars);
    let took = started.elapsed();
    assert!(matches!(result, Err(CelError::Budget { .. })), "{source}: {result:?}");
    let message = result.expect_err("budget").to_string();
    assert!(message.contains("evaluation budget") && message.contains("simplify"), "{message}");
    assert!(took < Duration::from_secs(60), "{source}: stopped only after {took:?}");
}

macro_rules! exploding {
    ($($name:ident: $source:expr;)*) => {$(
        #[test]
        fn $name() {
            exceeds_budget(&$source, &[]);
        }
    )*};
}

/// `[s].all(x0, [x0 + x0].all(x1, … size(xN) > 0))`: a string doubled at each level.
fn doubling(levels: usize) -> String {
    let mut source = String::from("['abcdefgh']");
    for level in 0..levels {
        let var = format!("x{level}");
        source = format!("{source}.all({var}, [{var} + {var}]");
    }
    source.push_str(&format!(".all(y, size(y) > 0){}", ")".repeat(levels)));
    source
}

exploding! {
    nested_comprehensions_over_ranges:
        "lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, true)))";
    nested_maps_build_a_huge_list:
        "lists.range(1000).map(a, lists.range(1000).map(b, lists.range(1000).map(c, c))).size() > 0";
    a_string_doubled_at_each_level: doubling(40);
    list_literals_of_copies: "lists.range(10000).map(a, [lists.range(10000), lists.range(10000)]).size() > 0";
    an_overrun_is_not_absorbed_by_or:
        "lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, c >= 0))) || true";
    an_overrun_is_not_absorbed_by_exists:
        "lists.range(3).exists(i, i == 0 ? lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, true))) : true)";
    filters_inside_filters:
        "lists.range(1000).filter(a, lists.range(1000).filter(b, lists.range(1000).exists(c, c < 0)).size() > 0).size() == 0";
}

#[test]
fn comparing_a_large_document_in_a_loop_is_charged_by_its_size() {
    let doc = json!({"items": (0..100_000).collect::<Vec<_>>()});
    exceeds_budget("lists.range(10000).all(i, doc == doc)", &[("doc", &doc)]);
}

#[test]
fn the_deadline_stops_an_evaluation_within_budget() {
    let env = CelEnv::new();
    let expression = env.compile("lists.range(1000).all(a, lists.range(1000).all(b, true))").expect("compiles");
    let started = Instant::now();
    let bindings = env.bind(&[], Utc::now()).expect("binds").with_deadline(started + Duration::from_millis(50));
    let result = expression.eval_bool_in(&bindings);
    assert!(matches!(result, Err(CelError::Deadline { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(result.expect_err("deadline").to_string().contains("review deadline"));
}

#[test]
fn a_passed_deadline_stops_even_a_cheap_expression() {
    let env = CelEnv::new();
    let expression = env.compile("1 + 1 == 2").expect("compiles");
    let bindings = env.bind(&[], Utc::now()).expect("binds").with_deadline(Instant::now());
    assert!(matches!(expression.eval_bool_in(&bindings), Err(CelError::Deadline { .. })));
}

#[test]
fn the_budget_is_per_evaluation() {
    let env = CelEnv::new();
    let expression = env.compile("lists.range(300).all(a, lists.range(300).all(b, b >= 0))").expect("compiles");
    let bindings = env.bind(&[], Utc::now()).expect("binds");
    for _ in 0..3 {
        assert_eq!(expression.eval_bool_in(&bindings), Ok(true), "90,000 steps fit one budget, each time");
    }
}

#[test]
fn an_sbom_sized_condition_runs() {
    let packages: Vec<Value> =
        (0..20_000).map(|i| json!({"name": format!("pkg-{i}"), "version": format!("1.{i}.0")})).collect();
    let sbom = json!({"packages": packages});
    let vars = [("sbom", &sbom)];
    let t = |src: &str| eval(src, &vars);
    assert_eq!(t("!sbom.packages.exists(p, p.name == 'log4j-core' && semverLess(p.version, '2.17.1'))"), Ok(true));
    assert_eq!(t("sbom.packages.map(p, p.name).filter(n, n.startsWith('pkg-1')).size() == 11111"), Ok(true));
    assert_eq!(t("sbom.packages.all(p, semverValid(p.version))"), Ok(true));
}

#[test]
fn instrumented_expressions_keep_their_meaning() {
    let doc = json!({"list": [3, 1, 2], "map": {"a": 1}, "s": "text"});
    let vars = [("doc", &doc)];
    let t = |src: &str| eval(src, &vars);
    // Errors are absorbed as CEL specifies: `false && error` is false, `true || error` is true.
    assert_eq!(t("lists.range(3).all(i, i == 1 ? 1 / 0 == 0 : false)"), Ok(false));
    assert_eq!(t("lists.range(3).exists(i, i == 0 ? 1 / 0 == 0 : true)"), Ok(true));
    assert!(matches!(t("lists.range(3).all(i, i == 1 ? 1 / 0 == 0 : true)"), Err(CelError::Eval { .. })));
    assert_eq!(t("doc.list.map(x, x * 2) == [6, 2, 4]"), Ok(true));
    assert_eq!(t("doc.list.map(x, x > 1, x) == [3, 2]"), Ok(true));
    assert_eq!(t("doc.list.filter(x, x != 1) == [3, 2]"), Ok(true));
    assert_eq!(t("doc.list.exists_one(x, x == 2)"), Ok(true));
    assert_eq!(t("doc.list.sortBy(x, -x) == [3, 2, 1]"), Ok(true));
    assert_eq!(t("doc.list.sort() == [1, 2, 3] && doc.list[0] == 3"), Ok(true));
    assert_eq!(t("{'k': doc.map.a, 'l': [doc.s]}.l[0] == 'text' && has(doc.map.a)"), Ok(true));
    assert_eq!(t("doc.map.all(k, k == 'a') && 'a' in doc.map && 1 in doc.list"), Ok(true));
    assert_eq!(t("doc.s.split('x').size() == 2 && doc.?nope.orValue(5) == 5"), Ok(true));
}

#[test]
fn a_too_long_expression_is_refused_at_compile_time() {
    let source = format!("'{}' != ''", "a".repeat(MAX_SOURCE_BYTES));
    let error = CelEnv::new().compile(&source).expect_err("too long").to_string();
    assert!(error.contains("bytes long") && error.contains("split it"), "{error}");
    assert!(error.len() < 1000, "the message does not repeat the whole source: {} bytes", error.len());
}

#[test]
fn an_expression_of_too_many_nodes_is_refused_at_compile_time() {
    let source = format!("[{}].size() > 0", vec!["0"; MAX_NODES + 1].join(","));
    assert!(source.len() <= MAX_SOURCE_BYTES);
    let error = CelEnv::new().compile(&source).expect_err("too many nodes").to_string();
    assert!(error.contains("nodes"), "{error}");
    let fits = format!("[{}].size() > 0", vec!["0"; MAX_NODES / 2].join(","));
    assert_eq!(eval(&fits, &[]), Ok(true));
}

/// The deepest expressions the parser accepts compile and run from a thread with the stack of
/// an async worker (2 MiB): parsing and evaluation run on a thread of their own with a large
/// stack, so nesting cannot overflow (and abort) the server.
#[test]
fn the_deepest_expressions_run_from_a_worker_stack() {
    let mut sources = Vec::new();
    for (open, close) in [("(1 + ", ")"), ("[", "][0]"), ("[1].all(x, ", ")"), ("{'k': ", "}.k")] {
        let deepest = (1..200)
            .map(|depth| format!("{}1{} == 1", open.repeat(depth), close.repeat(depth)))
            .take_while(|source| CelEnv::new().compile(source).is_ok())
            .last()
            .expect("some depth compiles");
        sources.push(deepest);
    }
    sources.push(format!("has(x{})", ".y".repeat(3000)));
    let run = move || {
        let env = CelEnv::new();
        let x = json!({});
        for source in &sources {
            match env.compile(source) {
                Ok(expression) => {
                    let bindings = env.bind(&[("x", &x)], Utc::now()).expect("binds");
                    let _ = expression.eval_bool_in(&bindings);
                }
                Err(e) => assert!(e.to_string().contains("nest") || e.to_string().contains("deep"), "{e}"),
            }
        }
    };
    std::thread::Builder::new().stack_size(2 << 20).spawn(run).expect("thread").join().expect("no overflow");
}

/// The deepest expressions evaluated on the caller's stack (tree depth up to `INLINE_DEPTH`), of
/// every nesting shape, evaluate on an async worker's 2 MiB stack in a debug build (an overflow
/// would abort this test binary).
#[test]
fn the_deepest_inline_expressions_fit_a_worker_stack() {
    use crate::policy::cel::INLINE_DEPTH;
    let env = CelEnv::new();
    let mut inline = Vec::new();
    for (open, close) in [("(1 + ", ")"), ("[", "][0]"), ("[1].all(x, ", ")"), ("{'k': ", "}.k"), ("x.y", "")] {
        let deepest = (1..200)
            .map(|depth| format!("{}1{} == 1", open.repeat(depth), close.repeat(depth)))
            .map_while(|source| env.compile(&source).ok())
            .take_while(|expression| expression.depth <= INLINE_DEPTH)
            .last()
            .expect("some depth is inline");
        inline.push(deepest);
    }
    assert!(inline.iter().all(|e| e.depth > INLINE_DEPTH / 2), "each shape reaches the bound");
    let run = move || {
        let x = json!({});
        for expression in &inline {
            let bindings = expression.env().bind(&[("x", &x)], Utc::now()).expect("binds");
            let _ = expression.eval_bool_in(&bindings);
        }
    };
    std::thread::Builder::new().stack_size(2 << 20).spawn(run).expect("thread").join().expect("no overflow");
}
