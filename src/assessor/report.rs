//! The report format, version 1: docs/report.schema.json (embedded), which
//! docs/report.md explains.
//!
//! An assessor gives the assessment fields (`summary`, `questions`,
//! `overall_score`, `recommendation`); [`assemble`] adds the fields the
//! daemon owns (`report_version`, `session_id`, `candidate`,
//! `script_title`, `generated_at`, `assessor`, `interview_complete`),
//! replacing whatever the assessor put there, then checks the whole
//! against the schema and against the interview ([`check_interview`]).
//!
//! The schema is checked by a small validator of the JSON Schema keywords
//! the file uses (`type`, `const`, `enum`, `minimum`, `maximum`,
//! `minLength`, `maxLength`, `pattern`, `required`, `properties`,
//! `additionalProperties`, `items`, `minItems`, `maxItems`, local `$ref`;
//! `format` is an annotation, as draft 2020-12 says). A keyword it does
//! not know fails its unit tests, so the file cannot ask for more than is
//! enforced.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::Assessor;
use crate::script::Script;

/// `report_version` of the reports this daemon writes.
pub const VERSION: u64 = 1;

/// docs/report.schema.json, as built in.
pub const SCHEMA: &str = include_str!("../../docs/report.schema.json");

/// At most this many problems are named in a failure reason.
const SHOWN_ERRORS: usize = 5;

/// The schema, parsed once.
pub fn schema() -> &'static Value {
    static SCHEMA_VALUE: OnceLock<Value> = OnceLock::new();
    SCHEMA_VALUE.get_or_init(|| serde_json::from_str(SCHEMA).expect("the report schema is JSON"))
}

/// Which assessor produced a report: its `assessor` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub kind: &'static str,
    /// The model that scored the answers; `None` when none did.
    pub model: Option<String>,
    /// Set when this assessor stood in for the configured one: why.
    pub fallback_reason: Option<String>,
}

impl Provenance {
    pub fn of(assessor: &Assessor) -> Provenance {
        Provenance {
            kind: assessor.name(),
            model: None,
            fallback_reason: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"kind": self.kind, "model": self.model});
        if let Some(reason) = &self.fallback_reason {
            v["fallback_reason"] = json!(reason);
        }
        v
    }
}

/// What the daemon knows about the interview, for [`assemble`].
pub struct Context<'a> {
    pub session_id: &'a str,
    /// Who was interviewed, from the invite.
    pub candidate: Option<&'a str>,
    pub script: &'a Script,
    /// (question id, answer text): what the assessor was given.
    pub answers: &'a [(String, String)],
    pub interview_complete: bool,
    pub assessor: Provenance,
    /// RFC 3339, UTC, milliseconds (`journal::now_rfc3339`).
    pub generated_at: String,
}

/// Completes an assessment into a report and validates it. The error is
/// the failure reason: `the assessor's report is invalid: PATH: WHAT`
/// (e.g. `questions[0].score: 140 is greater than the maximum of 100`),
/// naming up to five problems.
pub fn assemble(assessment: Value, cx: &Context) -> Result<Value, String> {
    let Value::Object(mut report) = assessment else {
        return Err("the assessor's report is not a JSON object".into());
    };
    for (key, value) in [
        ("report_version", json!(VERSION)),
        ("session_id", json!(cx.session_id)),
        ("candidate", json!(cx.candidate)),
        ("script_title", json!(cx.script.title)),
        ("generated_at", json!(cx.generated_at)),
        ("assessor", cx.assessor.to_json()),
        ("interview_complete", json!(cx.interview_complete)),
    ] {
        report.insert(key.to_owned(), value);
    }
    let report = Value::Object(report);
    let mut errors = schema_errors(&report);
    if errors.is_empty() {
        errors = check_interview(&report, cx.script, cx.answers);
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "the assessor's report is invalid: {}",
            summarize(&errors)
        ))
    }
}

/// Checks a report against docs/report.schema.json; the error names
/// every problem found (`PATH: WHAT; …`).
pub fn validate(report: &Value) -> Result<(), String> {
    let errors = schema_errors(report);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Every way `report` breaks the schema, as `PATH: WHAT`, in a stable
/// order; empty when it is valid.
pub fn schema_errors(report: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let root = schema();
    validator::check(root, root, report, "", &mut errors);
    errors
}

/// What the schema cannot say, checked against the interview: one entry
/// per question of the script (no unknown or repeated ids), each with
/// the script's text, and every `evidence` string a verbatim part of one
/// of the candidate's answers to that question.
pub fn check_interview(
    report: &Value,
    script: &Script,
    answers: &[(String, String)],
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let entries = report["questions"].as_array().map_or(&[][..], |a| a);
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("questions[{i}]");
        let id = entry["question_id"].as_str().unwrap_or_default();
        let Some(question) = script.questions.iter().find(|q| q.id == id) else {
            errors.push(format!(
                "{path}.question_id: {} is not a question of the script",
                show(&entry["question_id"])
            ));
            continue;
        };
        if !seen.insert(id) {
            errors.push(format!(
                "{path}.question_id: {} appears more than once",
                show(&entry["question_id"])
            ));
        }
        if entry["question"].as_str() != Some(question.text.as_str()) {
            errors.push(format!(
                "{path}.question: is not the text of question {} in the script",
                show(&entry["question_id"])
            ));
        }
        let evidence = entry["evidence"].as_array().map_or(&[][..], |a| a);
        for (j, quote) in evidence.iter().enumerate() {
            let text = quote.as_str().unwrap_or_default();
            let quoted = answers
                .iter()
                .any(|(q, answer)| *q == id && answer.contains(text));
            if !quoted {
                errors.push(format!(
                    "{path}.evidence[{j}]: {} is not a verbatim quote of the candidate's answers to {}",
                    show(quote),
                    show(&entry["question_id"])
                ));
            }
        }
    }
    for q in &script.questions {
        if !seen.contains(q.id.as_str()) {
            errors.push(format!(
                "questions: no entry for question {}",
                show(&json!(q.id))
            ));
        }
    }
    errors
}

fn summarize(errors: &[String]) -> String {
    let mut text = errors
        .iter()
        .take(SHOWN_ERRORS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN_ERRORS {
        text.push_str(&format!("; and {} more", errors.len() - SHOWN_ERRORS));
    }
    text
}

/// A value as compact JSON, cut to about 60 characters.
fn show(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// The JSON Schema keywords the validator enforces, for the subset of
/// draft 2020-12 that docs/report.schema.json uses.
mod validator {
    use serde_json::Value;

    use super::show;

    /// Keywords that only document.
    #[cfg(test)]
    const ANNOTATIONS: &[&str] = &[
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "examples",
        "format",
        "$defs",
    ];

    /// Keywords that [`check`] enforces.
    #[cfg(test)]
    const ASSERTIONS: &[&str] = &[
        "$ref",
        "type",
        "const",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
    ];

    fn at(path: &str, message: String) -> String {
        if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        }
    }

    fn child(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }

    /// Checks `instance` (at `path`) against `schema`, a part of `root`.
    pub(super) fn check(
        root: &Value,
        schema: &Value,
        instance: &Value,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errors.push(at(path, format!("{} is not allowed", show(instance))));
                return;
            }
            Value::Object(schema) => schema,
            _ => return,
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match resolve(root, reference) {
                Some(target) => check(root, target, instance, path, errors),
                None => errors.push(at(path, format!("schema error: no {reference}"))),
            }
        }
        if let Some(types) = schema.get("type") {
            let names: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !names.iter().any(|t| has_type(instance, t)) {
                errors.push(at(
                    path,
                    format!("{} is not of type {}", show(instance), names.join(" or ")),
                ));
                return;
            }
        }
        if let Some(expected) = schema.get("const") {
            if !same(expected, instance) {
                errors.push(at(
                    path,
                    format!("must be {expected}, not {}", show(instance)),
                ));
            }
        }
        if let Some(Value::Array(options)) = schema.get("enum") {
            if !options.iter().any(|o| same(o, instance)) {
                let list: Vec<String> = options.iter().map(Value::to_string).collect();
                errors.push(at(
                    path,
                    format!("{} is not one of {}", show(instance), list.join(", ")),
                ));
            }
        }
        match instance {
            Value::Number(n) => check_number(
                schema,
                n.as_f64().unwrap_or(f64::NAN),
                instance,
                path,
                errors,
            ),
            Value::String(s) => check_string(schema, s, instance, path, errors),
            Value::Array(items) => check_array(root, schema, items, instance, path, errors),
            Value::Object(object) => check_object(root, schema, object, path, errors),
            _ => {}
        }
    }

    fn check_number(
        schema: &serde_json::Map<String, Value>,
        n: f64,
        instance: &Value,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        if let Some(min) = schema
            .get("minimum")
            .filter(|m| m.as_f64().is_some_and(|m| n < m))
        {
            errors.push(at(
                path,
                format!("{instance} is less than the minimum of {min}"),
            ));
        }
        if let Some(max) = schema
            .get("maximum")
            .filter(|m| m.as_f64().is_some_and(|m| n > m))
        {
            errors.push(at(
                path,
                format!("{instance} is greater than the maximum of {max}"),
            ));
        }
    }

    fn check_string(
        schema: &serde_json::Map<String, Value>,
        s: &str,
        instance: &Value,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errors.push(at(
                    path,
                    format!(
                        "{} is shorter than {min} character{}",
                        show(instance),
                        plural(min)
                    ),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errors.push(at(
                    path,
                    format!(
                        "{} is longer than {max} character{}",
                        show(instance),
                        plural(max)
                    ),
                ));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match Pattern::compile(pattern) {
                Ok(p) if p.is_match(s) => {}
                Ok(_) => errors.push(at(
                    path,
                    format!("{} does not match the pattern {pattern}", show(instance)),
                )),
                Err(e) => errors.push(at(path, format!("schema error: {e}"))),
            }
        }
    }

    fn check_array(
        root: &Value,
        schema: &serde_json::Map<String, Value>,
        items: &[Value],
        instance: &Value,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let len = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if len < min {
                errors.push(at(
                    path,
                    format!(
                        "{} has fewer than {min} item{}",
                        show(instance),
                        plural(min)
                    ),
                ));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if len > max {
                errors.push(at(
                    path,
                    format!("{} has more than {max} item{}", show(instance), plural(max)),
                ));
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }

    fn check_object(
        root: &Value,
        schema: &serde_json::Map<String, Value>,
        object: &serde_json::Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    errors.push(at(path, format!("missing required property \"{key}\"")));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, value) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => check(root, property, value, &child(path, key), errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(at(path, format!("unknown property \"{key}\"")))
                    }
                    Some(additional) => check(root, additional, value, &child(path, key), errors),
                    None => {}
                },
            }
        }
    }

    fn plural(n: u64) -> &'static str {
        if n == 1 {
            ""
        } else {
            "s"
        }
    }

    /// A `$ref` within the schema file: `#` or `#/json/pointer`.
    fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        root.pointer(pointer)
    }

    fn has_type(v: &Value, name: &str) -> bool {
        match name {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        }
    }

    /// JSON equality, where 1 and 1.0 are the same number.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    /// Keywords of `schema` (and of every schema inside it) that the
    /// validator neither enforces nor ignores as annotations, patterns
    /// it cannot compile, and `$ref`s it cannot resolve.
    #[cfg(test)]
    pub(super) fn unsupported(root: &Value, schema: &Value, path: &str) -> Vec<String> {
        let mut found = Vec::new();
        let Value::Object(map) = schema else {
            return found;
        };
        for (key, value) in map {
            let here = format!("{path}/{key}");
            if !ANNOTATIONS.contains(&key.as_str()) && !ASSERTIONS.contains(&key.as_str()) {
                found.push(format!("{here}: unsupported keyword"));
            }
            match key.as_str() {
                "properties" | "$defs" => {
                    for (name, sub) in value.as_object().into_iter().flatten() {
                        found.extend(unsupported(root, sub, &format!("{here}/{name}")));
                    }
                }
                "items" | "additionalProperties" => found.extend(unsupported(root, value, &here)),
                "pattern" => {
                    if let Err(e) = Pattern::compile(value.as_str().unwrap_or_default()) {
                        found.push(format!("{here}: {e}"));
                    }
                }
                "$ref" if value.as_str().and_then(|r| resolve(root, r)).is_none() => {
                    found.push(format!("{here}: cannot resolve {value}"));
                }
                _ => {}
            }
        }
        found
    }

    /// The regular expressions `pattern` may use here: anchors `^` and
    /// `$` at the ends, literal characters, `\` escapes (`\d`), `.`,
    /// classes `[a-z0-9_]` (`[^…]` too), and the quantifiers `?`, `*`,
    /// `+`, `{n}`, `{n,}`, `{n,m}`. Groups and alternation are refused.
    pub(super) struct Pattern {
        start: bool,
        end: bool,
        atoms: Vec<(Atom, usize, usize)>,
    }

    enum Atom {
        Any,
        Char(char),
        Class {
            negated: bool,
            ranges: Vec<(char, char)>,
        },
    }

    impl Atom {
        fn matches(&self, c: char) -> bool {
            match self {
                Atom::Any => c != '\n',
                Atom::Char(x) => c == *x,
                Atom::Class { negated, ranges } => {
                    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
                }
            }
        }
    }

    fn escaped(c: char) -> Atom {
        match c {
            'd' => Atom::Class {
                negated: false,
                ranges: vec![('0', '9')],
            },
            c => Atom::Char(c),
        }
    }

    impl Pattern {
        pub(super) fn compile(pattern: &str) -> Result<Pattern, String> {
            let unsupported =
                |what: &str| Err(format!("pattern {pattern}: {what} is not supported"));
            let mut chars: Vec<char> = pattern.chars().collect();
            let start = chars.first() == Some(&'^');
            if start {
                chars.remove(0);
            }
            let end = chars.last() == Some(&'$') && !chars.ends_with(&['\\', '$']);
            if end {
                chars.pop();
            }
            let mut atoms: Vec<(Atom, usize, usize)> = Vec::new();
            let mut i = 0;
            while i < chars.len() {
                let c = chars[i];
                i += 1;
                let atom = match c {
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return unsupported("a trailing \\");
                        };
                        i += 1;
                        if e.is_ascii_alphanumeric() && e != 'd' {
                            return unsupported(&format!("\\{e}"));
                        }
                        escaped(e)
                    }
                    '.' => Atom::Any,
                    '[' => {
                        let negated = chars.get(i) == Some(&'^');
                        if negated {
                            i += 1;
                        }
                        let mut ranges = Vec::new();
                        loop {
                            let Some(&c) = chars.get(i) else {
                                return unsupported("an unclosed [");
                            };
                            i += 1;
                            let lo = match c {
                                ']' => break,
                                '\\' => {
                                    let Some(&e) = chars.get(i) else {
                                        return unsupported("a trailing \\");
                                    };
                                    i += 1;
                                    if e == 'd' {
                                        ranges.push(('0', '9'));
                                        continue;
                                    }
                                    if e.is_ascii_alphanumeric() {
                                        return unsupported(&format!("\\{e}"));
                                    }
                                    e
                                }
                                c => c,
                            };
                            if chars.get(i) == Some(&'-')
                                && chars.get(i + 1).is_some_and(|&h| h != ']')
                            {
                                let hi = chars[i + 1];
                                i += 2;
                                ranges.push((lo, hi));
                            } else {
                                ranges.push((lo, lo));
                            }
                        }
                        Atom::Class { negated, ranges }
                    }
                    '(' | ')' | '|' => return unsupported(&format!("`{c}`")),
                    '^' | '$' => return unsupported(&format!("`{c}` inside the pattern")),
                    '?' | '*' | '+' | '{' => return unsupported("a quantifier without an atom"),
                    c => Atom::Char(c),
                };
                // The quantifier, and how many characters it takes.
                let (min, max, taken) = match chars.get(i) {
                    Some('?') => (0, 1, 1),
                    Some('*') => (0, usize::MAX, 1),
                    Some('+') => (1, usize::MAX, 1),
                    Some('{') => {
                        let close = chars[i..]
                            .iter()
                            .position(|&c| c == '}')
                            .ok_or_else(|| format!("pattern {pattern}: an unclosed {{"))?;
                        let inside: String = chars[i + 1..i + close].iter().collect();
                        let number = |s: &str| {
                            s.trim().parse::<usize>().map_err(|_| {
                                format!("pattern {pattern}: bad quantifier {{{inside}}}")
                            })
                        };
                        let (min, max) = match inside.split_once(',') {
                            None => {
                                let n = number(&inside)?;
                                (n, n)
                            }
                            Some((lo, "")) => (number(lo)?, usize::MAX),
                            Some((lo, hi)) => (number(lo)?, number(hi)?),
                        };
                        (min, max, close + 1)
                    }
                    _ => (1, 1, 0),
                };
                i += taken;
                if taken > 0 && matches!(chars.get(i), Some('?' | '*' | '+' | '{')) {
                    return unsupported("a quantifier after a quantifier");
                }
                atoms.push((atom, min, max));
            }
            Ok(Pattern { start, end, atoms })
        }

        pub(super) fn is_match(&self, s: &str) -> bool {
            let chars: Vec<char> = s.chars().collect();
            if self.start {
                self.match_here(&self.atoms, &chars)
            } else {
                (0..=chars.len()).any(|i| self.match_here(&self.atoms, &chars[i..]))
            }
        }

        fn match_here(&self, atoms: &[(Atom, usize, usize)], s: &[char]) -> bool {
            let Some(((atom, min, max), rest)) = atoms.split_first() else {
                return !self.end || s.is_empty();
            };
            let mut n = 0;
            while n < *max && n < s.len() && atom.matches(s[n]) {
                n += 1;
            }
            (*min..=n).rev().any(|k| self.match_here(rest, &s[k..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validator::{unsupported, Pattern};
    use super::*;

    fn script() -> Script {
        Script::parse(
            "title='Mini'\ngreeting='g'\nclosing='c'\n\
             [[questions]]\nid='q1'\ntext='Q one?'\nkeywords=['lock']\nmin_words=2\n\
             [[questions]]\nid='two'\ntext='Q two?'\n",
        )
        .unwrap()
    }

    fn answers() -> Vec<(String, String)> {
        vec![("q1".to_owned(), "We lock it. Then we test.".to_owned())]
    }

    fn context<'a>(script: &'a Script, answers: &'a [(String, String)]) -> Context<'a> {
        Context {
            candidate: None,
            session_id: "sess_0123456789abcdef0123456789abcdef",
            script,
            answers,
            interview_complete: false,
            assessor: Provenance {
                kind: "command",
                model: None,
                fallback_reason: None,
            },
            generated_at: "2026-11-24T00:15:55.800Z".to_owned(),
        }
    }

    fn assessment() -> Value {
        json!({
            "summary": "Fine.",
            "questions": [
                {"question_id": "q1", "question": "Q one?", "score": 80,
                 "reasons": ["mentions locking"], "evidence": ["We lock it."]},
                {"question_id": "two", "question": "Q two?", "score": 0,
                 "reasons": ["no answer"], "evidence": []}
            ],
            "overall_score": 40,
            "recommendation": "lean_no",
        })
    }

    fn reason(assessment: Value) -> String {
        let (s, a) = (script(), answers());
        assemble(assessment, &context(&s, &a)).unwrap_err()
    }

    #[test]
    fn the_validator_enforces_every_keyword_the_schema_uses() {
        let found = unsupported(schema(), schema(), "");
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_daemon_fills_in_its_fields_and_the_whole_is_valid() {
        let (s, a) = (script(), answers());
        let mut given = assessment();
        // Whatever the assessor says about the daemon's fields is replaced.
        given["session_id"] = json!("sess_forged");
        given["assessor"] = json!({"kind": "openai", "model": "x"});
        let report = assemble(given, &context(&s, &a)).unwrap();
        assert_eq!(validate(&report), Ok(()));
        assert_eq!(report["report_version"], 1);
        assert_eq!(
            report["session_id"],
            "sess_0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            report["assessor"],
            json!({"kind": "command", "model": null})
        );
        assert_eq!(report["candidate"], Value::Null);
        assert_eq!(report["script_title"], "Mini");
        assert_eq!(report["interview_complete"], false);
        assert_eq!(report["overall_score"], 40);
    }

    #[test]
    fn the_rubric_report_is_valid() {
        let (s, a) = (script(), answers());
        let mut cx = context(&s, &a);
        cx.assessor = Provenance::of(&Assessor::Rubric);
        let report = assemble(crate::assessor::rubric::assess(&s, &a), &cx).unwrap();
        assert_eq!(report["assessor"], json!({"kind": "rubric", "model": null}));
        assert_eq!(report["questions"][0]["evidence"], json!(["We lock it."]));
    }

    #[test]
    fn a_fallback_reason_is_reported() {
        let (s, a) = (script(), answers());
        let mut cx = context(&s, &a);
        cx.assessor = Provenance {
            kind: "rubric",
            model: None,
            fallback_reason: Some("the model did not answer".into()),
        };
        let report = assemble(assessment(), &cx).unwrap();
        assert_eq!(
            report["assessor"]["fallback_reason"],
            "the model did not answer"
        );
    }

    #[test]
    fn an_invalid_report_names_the_field_and_the_rule() {
        let mut a = assessment();
        a["questions"][0]["score"] = json!(140);
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: questions[0].score: 140 is greater than the maximum of 100"
        );
        let mut a = assessment();
        a["questions"][1]["score"] = json!(7.5);
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: questions[1].score: 7.5 is not of type integer"
        );
        let mut a = assessment();
        a["recommendation"] = json!("maybe");
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: recommendation: \"maybe\" is not one of \"strong_yes\", \"yes\", \"lean_no\", \"no\""
        );
        let mut a = assessment();
        a.as_object_mut().unwrap().remove("summary");
        a["note"] = json!("extra");
        a["questions"][0]["words"] = json!(3);
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: missing required property \"summary\"; \
             unknown property \"note\"; questions[0]: unknown property \"words\""
        );
        let mut a = assessment();
        a["questions"][0]["reasons"] = json!(["ok", ""]);
        a["overall_score"] = json!(-1);
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: overall_score: -1 is less than the minimum of 0; \
             questions[0].reasons[1]: \"\" is shorter than 1 character"
        );
        let mut a = assessment();
        a["questions"][0]["evidence"] = json!(vec!["We lock it."; 11]);
        a["questions"][1]["evidence"] = json!(["x".repeat(1001)]);
        assert_eq!(
            reason(a),
            format!(
                "the assessor's report is invalid: questions[0].evidence: {}… has more than 10 items; \
                 questions[1].evidence[0]: \"{}… is longer than 1000 characters",
                &json!(vec!["We lock it."; 11]).to_string()[..60],
                "x".repeat(59)
            )
        );
        let many = reason(json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}));
        // 4 missing fields, 7 unknown ones: 5 named, 6 counted.
        assert!(many.ends_with("; and 6 more"), "{many}");
    }

    #[test]
    fn a_report_must_match_the_interview() {
        let mut a = assessment();
        a["questions"][0]["evidence"] = json!(["We locked it."]);
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: questions[0].evidence[0]: \"We locked it.\" is not a verbatim quote of the candidate's answers to \"q1\""
        );
        let mut a = assessment();
        a["questions"][1]["question_id"] = json!("q1");
        a["questions"][1]["question"] = json!("Q one?");
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: questions[1].question_id: \"q1\" appears more than once; \
             questions: no entry for question \"two\""
        );
        let mut a = assessment();
        a["questions"][1]["question_id"] = json!("three");
        a["questions"][0]["question"] = json!("Q 1?");
        assert_eq!(
            reason(a),
            "the assessor's report is invalid: questions[0].question: is not the text of question \"q1\" in the script; \
             questions[1].question_id: \"three\" is not a question of the script; \
             questions: no entry for question \"two\""
        );
    }

    #[test]
    fn the_daemon_fields_are_checked_too() {
        let (s, a) = (script(), answers());
        let mut report = assemble(assessment(), &context(&s, &a)).unwrap();
        report["session_id"] = json!("sess_XYZ");
        report["generated_at"] = json!("2026-11-24 00:15:55");
        report["report_version"] = json!(2);
        report["assessor"]["model"] = json!("");
        assert_eq!(
            validate(&report),
            Err(
                "assessor.model: \"\" is shorter than 1 character; \
                 generated_at: \"2026-11-24 00:15:55\" does not match the pattern ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$; \
                 report_version: must be 1, not 2; \
                 session_id: \"sess_XYZ\" does not match the pattern ^sess_[0-9a-f]{32}$"
                    .to_owned()
            )
        );
        assert_eq!(
            validate(&json!([])),
            Err("[] is not of type object".to_owned())
        );
    }

    #[test]
    fn patterns_match_like_regular_expressions() {
        let p = Pattern::compile("^sess_[0-9a-f]{32}$").unwrap();
        assert!(p.is_match("sess_0123456789abcdef0123456789abcdef"));
        assert!(!p.is_match("sess_0123456789abcdef0123456789abcde"));
        assert!(!p.is_match("sess_0123456789abcdef0123456789abcdef0"));
        assert!(!p.is_match("xsess_0123456789abcdef0123456789abcdef"));
        let p = Pattern::compile("b+c?d*e{2,3}\\.").unwrap();
        assert!(p.is_match("abbdee."));
        assert!(p.is_match("bceee."));
        assert!(!p.is_match("bcee"));
        assert!(!p.is_match("be."));
        let p = Pattern::compile("^[^a-c\\d]x{1,}$").unwrap();
        assert!(p.is_match("dxx"));
        assert!(!p.is_match("axx") && !p.is_match("5x") && !p.is_match("d"));
        for bad in ["(a|b)", "a**", "^a$b", "[ab", "a{2"] {
            assert!(Pattern::compile(bad).is_err(), "{bad}");
        }
    }
}
