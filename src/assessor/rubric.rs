//! The built-in `rubric` assessor: deterministic scoring of the answers
//! against each question's rubric hints.
//!
//! For each question, with `w` the words in the candidate's answers to it
//! and `k` the number of its keywords:
//!
//! ```text
//! length    = min(1, w / min_words)                  (1 when min_words is 0)
//! coverage  = keywords mentioned / k                 (= length when k = 0)
//! relevance = min(1, keywords mentioned / min(2, k)) (= 1 when k = 0)
//! score     = round(100 * (0.4 * length * relevance + 0.6 * coverage)),  0 when w = 0
//! overall   = round(mean of the question scores)
//! ```
//!
//! `relevance` keeps length alone from scoring: an answer that mentions no
//! keyword gets nothing for being long, one that mentions one keyword half
//! the length credit.
//!
//! A keyword counts as mentioned when some word of the answer has the same
//! [`stem`] ("tested" mentions "tests", "readable" mentions "readability").
//! Recommendation: 75 and up `strong_yes`, 50 `yes`, 25 `lean_no`, below
//! `no`.
//!
//! [`assess`] gives the assessment fields of the report (`summary`,
//! `questions`, `overall_score`, `recommendation`); the job adds the
//! daemon's own fields and validates the whole ([`crate::assessor::report`]).

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::script::{words, Question, Script};

/// At most this many quotes per question go into `evidence`.
const MAX_EVIDENCE: usize = 3;

/// A quote longer than this (in bytes) is cut at a word boundary; what is
/// left is still a verbatim part of the answer.
const MAX_QUOTE_BYTES: usize = 300;

/// One scored question.
struct Scored {
    score: u32,
    answered: bool,
}

/// The assessment fields of a report: `summary`, `questions` (one per script
/// question, in script order), `overall_score` and `recommendation`.
/// `answers` are (question id, text) pairs, in the order given.
pub fn assess(script: &Script, answers: &[(String, String)]) -> Value {
    let mut questions = Vec::new();
    let mut scored = Vec::new();
    for q in &script.questions {
        let texts: Vec<&str> = answers
            .iter()
            .filter(|(id, _)| *id == q.id)
            .map(|(_, t)| t.as_str())
            .collect();
        let (score, entry) = score_question(q, &texts);
        questions.push(entry);
        scored.push(Scored {
            score,
            answered: texts.iter().any(|t| words(t).next().is_some()),
        });
    }
    let total = scored.len();
    let answered = scored.iter().filter(|s| s.answered).count();
    let overall =
        (scored.iter().map(|s| s.score as f64).sum::<f64>() / total as f64).round() as u32;
    // Written to the candidate, who may be shown it alone
    // (assessment.share_with_candidate = "summary"): no score, no
    // recommendation, no ranking of their answers.
    let answered = if answered == total {
        format!("you answered all {total} {}", plural(total, "question"))
    } else {
        format!(
            "you answered {answered} of {total} {}",
            plural(total, "question")
        )
    };
    let summary = format!(
        "Thank you for your interview: {answered}. Your answers have been recorded and assessed; the team will be in touch about next steps."
    );
    json!({
        "summary": summary,
        "questions": questions,
        "overall_score": overall,
        "recommendation": recommendation(overall),
    })
}

/// The recommendation for an overall score.
pub fn recommendation(overall: u32) -> &'static str {
    match overall {
        75.. => "strong_yes",
        50.. => "yes",
        25.. => "lean_no",
        _ => "no",
    }
}

/// Scores one question on the answers given to it; returns the score and
/// the report's entry for it.
fn score_question(q: &Question, texts: &[&str]) -> (u32, Value) {
    let answer_words: Vec<String> = texts.iter().flat_map(|t| words(t)).collect();
    let n = answer_words.len();
    let answer_stems: HashSet<String> = answer_words.iter().map(|w| stem(w)).collect();
    let (matched, missed): (Vec<&String>, Vec<&String>) = q
        .keywords
        .iter()
        .partition(|k| answer_stems.contains(&stem(&k.to_lowercase())));
    let k = q.keywords.len();
    let length = match (n, q.min_words) {
        (0, _) => 0.0,
        (_, 0) => 1.0,
        (n, min) => (n as f64 / min as f64).min(1.0),
    };
    let (coverage, relevance) = if k == 0 {
        (length, 1.0)
    } else {
        let mentioned = matched.len() as f64;
        (mentioned / k as f64, (mentioned / k.min(2) as f64).min(1.0))
    };
    let score = if n == 0 {
        0
    } else {
        (100.0 * (0.4 * length * relevance + 0.6 * coverage)).round() as u32
    };
    let mut reasons = Vec::new();
    let mut evidence = Vec::new();
    if n == 0 {
        reasons.push("no answer".to_owned());
    } else {
        reasons.push(if q.min_words == 0 {
            format!("{n} {}", plural(n, "word"))
        } else {
            format!(
                "{n} {} (expected at least {})",
                plural(n, "word"),
                q.min_words
            )
        });
        if k > 0 {
            reasons.push(format!(
                "mentioned {} of {k} {}{}{}",
                matched.len(),
                plural(k, "keyword"),
                if matched.is_empty() { "" } else { ": " },
                join(&matched)
            ));
            if !missed.is_empty() {
                reasons.push(format!("not mentioned: {}", join(&missed)));
            }
            match matched.len() {
                0 => reasons.push("no keyword mentioned: length does not count".to_owned()),
                1 if k > 1 => reasons.push("one keyword mentioned: length counts half".to_owned()),
                _ => {}
            }
        }
        reasons.push(format!(
            "length {length:.2}, relevance {relevance:.2}, coverage {coverage:.2}: {score}"
        ));
        let stems: HashSet<String> = matched.iter().map(|k| stem(&k.to_lowercase())).collect();
        evidence = quotes(texts, &stems);
    }
    let entry = json!({
        "question_id": q.id,
        "question": q.text,
        "score": score,
        "reasons": reasons,
        "evidence": evidence,
    });
    (score, entry)
}

/// The sentences of the answers that mention a keyword (one of `stems`),
/// verbatim, in order, without repeats; at most [`MAX_EVIDENCE`].
fn quotes(texts: &[&str], stems: &HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if stems.is_empty() {
        return out;
    }
    for text in texts {
        for sentence in sentences(text) {
            if out.len() == MAX_EVIDENCE {
                return out;
            }
            if words(sentence).any(|w| stems.contains(&stem(&w))) {
                let quote = cut(sentence, MAX_QUOTE_BYTES);
                if !out.iter().any(|q| q == quote) {
                    out.push(quote.to_owned());
                }
            }
        }
    }
    out
}

/// The sentences of a text, trimmed: a sentence ends after `.`, `!` or `?`
/// followed by white space (or the end), or at a line break.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        let end = match c {
            '\n' => Some(i),
            '.' | '!' | '?' if next_is_space => Some(i + c.len_utf8()),
            _ => None,
        };
        if let Some(end) = end {
            out.push(&text[start..end]);
            start = end;
        }
    }
    out.push(&text[start..]);
    out.into_iter().map(str::trim).filter(|s| !s.is_empty())
}

/// `s` cut to at most `max` bytes at a word boundary (a prefix of `s`).
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = &s[..end];
    match head.rfind(char::is_whitespace) {
        Some(space) if space > 0 => head[..space].trim_end(),
        _ => head,
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn join(words: &[&String]) -> String {
    words
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stem of a lowercase word: the Porter stemming algorithm (M. F.
/// Porter, "An algorithm for suffix stripping", 1980), steps 1a to 5b as
/// published, so that inflected and derived forms share a stem: "tests",
/// "tested", "testing" give "test"; "readable" and "readability" give
/// "readabl"; "synchronized" and "synchronization" give "synchron".
///
/// It strips English suffixes only and does not know irregular forms
/// ("built" is not "build"). Words of one or two letters, and words with
/// anything but the letters a to z (digits, accents), are their own stem.
pub fn stem(word: &str) -> String {
    if word.len() <= 2 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word.to_owned();
    }
    let mut w = word.as_bytes().to_vec();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5(&mut w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

/// Porter's consonant: not a, e, i, o, u, nor a `y` after a consonant.
fn is_consonant(w: &[u8], i: usize) -> bool {
    match w[i] {
        b'a' | b'e' | b'i' | b'o' | b'u' => false,
        b'y' => i == 0 || !is_consonant(w, i - 1),
        _ => true,
    }
}

/// Porter's measure m: the number of vowel-consonant sequences in
/// [C](VC){m}[V].
fn measure(w: &[u8]) -> usize {
    let n = w.len();
    let mut i = 0;
    while i < n && is_consonant(w, i) {
        i += 1;
    }
    let mut m = 0;
    loop {
        while i < n && !is_consonant(w, i) {
            i += 1;
        }
        if i == n {
            return m;
        }
        while i < n && is_consonant(w, i) {
            i += 1;
        }
        m += 1;
    }
}

fn has_vowel(w: &[u8]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

/// *d: ends with a double consonant.
fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// *o: ends consonant-vowel-consonant, the last not w, x or y.
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y')
}

/// The stem left when `w` ends with `suffix`.
fn strip<'a>(w: &'a [u8], suffix: &str) -> Option<&'a [u8]> {
    w.strip_suffix(suffix.as_bytes())
}

fn replace_end(w: &mut Vec<u8>, suffix_len: usize, with: &str) {
    w.truncate(w.len() - suffix_len);
    w.extend_from_slice(with.as_bytes());
}

/// Takes the first rule whose suffix `w` ends with (the lists put longer
/// suffixes first) and applies it when `condition` holds for the stem.
fn apply_first(w: &mut Vec<u8>, rules: &[(&str, &str)], condition: impl Fn(&[u8]) -> bool) {
    for (suffix, with) in rules {
        if let Some(stem) = strip(w, suffix) {
            if condition(stem) {
                replace_end(w, suffix.len(), with);
            }
            return;
        }
    }
}

fn step1a(w: &mut Vec<u8>) {
    apply_first(
        w,
        &[("sses", "ss"), ("ies", "i"), ("ss", "ss"), ("s", "")],
        |_| true,
    );
}

fn step1b(w: &mut Vec<u8>) {
    if let Some(stem) = strip(w, "eed") {
        if measure(stem) > 0 {
            w.pop();
        }
        return;
    }
    let removed = ["ed", "ing"].into_iter().find_map(|suffix| {
        strip(w, suffix)
            .filter(|stem| has_vowel(stem))
            .map(|_| suffix.len())
    });
    let Some(len) = removed else { return };
    w.truncate(w.len() - len);
    if w.ends_with(b"at") || w.ends_with(b"bl") || w.ends_with(b"iz") {
        w.push(b'e');
    } else if ends_double_consonant(w) && !matches!(w[w.len() - 1], b'l' | b's' | b'z') {
        w.pop();
    } else if measure(w) == 1 && ends_cvc(w) {
        w.push(b'e');
    }
}

fn step1c(w: &mut [u8]) {
    let n = w.len();
    if w[n - 1] == b'y' && has_vowel(&w[..n - 1]) {
        w[n - 1] = b'i';
    }
}

fn step2(w: &mut Vec<u8>) {
    apply_first(
        w,
        &[
            ("ational", "ate"),
            ("tional", "tion"),
            ("enci", "ence"),
            ("anci", "ance"),
            ("izer", "ize"),
            ("abli", "able"),
            ("alli", "al"),
            ("entli", "ent"),
            ("eli", "e"),
            ("ousli", "ous"),
            ("ization", "ize"),
            ("ation", "ate"),
            ("ator", "ate"),
            ("alism", "al"),
            ("iveness", "ive"),
            ("fulness", "ful"),
            ("ousness", "ous"),
            ("aliti", "al"),
            ("iviti", "ive"),
            ("biliti", "ble"),
        ],
        |stem| measure(stem) > 0,
    );
}

fn step3(w: &mut Vec<u8>) {
    apply_first(
        w,
        &[
            ("icate", "ic"),
            ("ative", ""),
            ("alize", "al"),
            ("iciti", "ic"),
            ("ical", "ic"),
            ("ful", ""),
            ("ness", ""),
        ],
        |stem| measure(stem) > 0,
    );
}

fn step4(w: &mut Vec<u8>) {
    // `ion` counts only after `s` or `t`; otherwise the next rules apply.
    if let Some(stem) = strip(w, "ion") {
        if stem.ends_with(b"s") || stem.ends_with(b"t") {
            if measure(stem) > 1 {
                w.truncate(stem.len());
            }
            return;
        }
    }
    let rules: Vec<(&str, &str)> = [
        "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ou",
        "ism", "ate", "iti", "ous", "ive", "ize",
    ]
    .into_iter()
    .map(|s| (s, ""))
    .collect();
    apply_first(w, &rules, |stem| measure(stem) > 1);
}

fn step5(w: &mut Vec<u8>) {
    if let Some(stem) = strip(w, "e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
    if w.ends_with(b"ll") && measure(w) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Script {
        Script::parse(
            "title='t'\ngreeting='g'\nclosing='c'\n\
             [[questions]]\nid='a'\ntext='A?'\nkeywords=['lock','thread']\nmin_words=4\n\
             [[questions]]\nid='b'\ntext='B?'\nmin_words=2\n",
        )
        .unwrap()
    }

    fn answer(id: &str, text: &str) -> Vec<(String, String)> {
        vec![(id.to_owned(), text.to_owned())]
    }

    #[test]
    fn follows_the_documented_formula() {
        let r = assess(&script(), &answer("a", "Locking the shared state."));
        // a: 4 words of 4 -> length 1; 1 of 2 keywords -> coverage 0.5,
        // relevance min(1, 1/2) = 0.5; 100 * (0.4 * 1 * 0.5 + 0.6 * 0.5) = 50.
        assert_eq!(r["questions"][0]["score"], 50);
        assert_eq!(
            r["questions"][0]["evidence"],
            json!(["Locking the shared state."])
        );
        // b: unanswered -> 0; overall = 25.
        assert_eq!(r["questions"][1]["score"], 0);
        assert_eq!(r["questions"][1]["evidence"], json!([]));
        assert_eq!(r["overall_score"], 25);
        assert_eq!(r["recommendation"], "lean_no");

        // Both keywords: relevance 1; 2 words of 4: length 0.5;
        // 100 * (0.4 * 0.5 * 1 + 0.6 * 1) = 80.
        let r = assess(&script(), &answer("a", "threads locked"));
        assert_eq!(r["questions"][0]["score"], 80);
        // No keywords listed: coverage = length, relevance 1: 2 of 2 -> 100.
        let r = assess(&script(), &answer("b", "two words"));
        assert_eq!(r["questions"][1]["score"], 100);
        assert_eq!(r["overall_score"], 50);
        assert_eq!(r["recommendation"], "yes");
    }

    #[test]
    fn length_alone_does_not_score_an_off_topic_answer() {
        let off_topic = "I really enjoy hiking in the mountains with my family every summer, \
                         and we usually bring a picnic and a camera to take photos of the views.";
        let r = assess(&script(), &answer("a", off_topic));
        let q = &r["questions"][0];
        // Far over min_words, no keyword: length does not count.
        assert_eq!(q["score"], 0, "{q:#}");
        assert_eq!(q["evidence"], json!([]));
        assert!(q["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "no keyword mentioned: length does not count"));
        // The same answer with one keyword in passing: half the length credit.
        let r = assess(
            &script(),
            &answer("a", &format!("{off_topic} We locked the car.")),
        );
        // 100 * (0.4 * 1 * 0.5 + 0.6 * 0.5) = 50.
        assert_eq!(r["questions"][0]["score"], 50);
        assert_eq!(r["questions"][0]["evidence"], json!(["We locked the car."]));
    }

    #[test]
    fn keywords_match_on_stems() {
        let s = Script::parse(
            "title='t'\ngreeting='g'\nclosing='c'\n\
             [[questions]]\nid='r'\ntext='Review?'\n\
             keywords=['tests','readability','synchronization','shipped','state']\n",
        )
        .unwrap();
        let r = assess(
            &s,
            &answer(
                "r",
                "It was well tested and readable. We synchronized access, shipping weekly. \
                 The statement was long.",
            ),
        );
        let reasons = r["questions"][0]["reasons"].to_string();
        assert!(
            reasons.contains(
                "mentioned 4 of 5 keywords: tests, readability, synchronization, shipped"
            ),
            "{reasons}"
        );
        // "statement" does not mention "state": stems, not prefixes.
        assert!(reasons.contains("not mentioned: state"), "{reasons}");
        assert_eq!(
            r["questions"][0]["evidence"],
            json!([
                "It was well tested and readable.",
                "We synchronized access, shipping weekly."
            ])
        );
    }

    #[test]
    fn the_stemmer_gives_inflected_and_derived_forms_one_stem() {
        let groups: &[&[&str]] = &[
            &["test", "tests", "tested", "testing"],
            &["readable", "readability"],
            &["lock", "locks", "locked", "locking"],
            &["learn", "learned", "learning", "learns"],
            &["ship", "shipped", "shipping", "ships"],
            &["synchronize", "synchronized", "synchronization"],
            &["iterate", "iterating", "iteration"],
            &["share", "shared", "sharing"],
            &["trace", "traces", "tracing"],
            &["order", "ordered", "ordering"],
            &["specific", "specifically"],
            &["complex", "complexity"],
            &["correct", "correctness"],
            &["atomic", "atomically"],
            &["responsible", "responsibility"],
            &[
                "connect",
                "connected",
                "connecting",
                "connection",
                "connections",
            ],
        ];
        for group in groups {
            let stems: Vec<String> = group.iter().map(|w| stem(w)).collect();
            assert!(
                stems.iter().all(|s| *s == stems[0]),
                "{group:?} -> {stems:?}"
            );
        }
        for (a, b) in [
            ("state", "statement"),
            ("read", "ready"),
            ("hash", "hashtag"),
        ] {
            assert_ne!(stem(a), stem(b), "{a} / {b}");
        }
    }

    #[test]
    fn the_stemmer_follows_porter() {
        // Examples from Porter's paper, through all the steps.
        for (word, expected) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "ti"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("bled", "bled"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("tanned", "tan"),
            ("falling", "fall"),
            ("hissing", "hiss"),
            ("fizzed", "fizz"),
            ("failing", "fail"),
            ("filing", "file"),
            ("happy", "happi"),
            ("sky", "sky"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("rational", "ration"),
            ("digitizer", "digit"),
            ("operator", "oper"),
            ("feudalism", "feudal"),
            ("decisiveness", "decis"),
            ("hopefulness", "hope"),
            ("callousness", "callous"),
            ("formality", "formal"),
            ("sensitivity", "sensit"),
            ("sensibility", "sensibl"),
            ("triplicate", "triplic"),
            ("formative", "form"),
            ("formalize", "formal"),
            ("electricity", "electr"),
            ("electrical", "electr"),
            ("hopeful", "hope"),
            ("goodness", "good"),
            ("revival", "reviv"),
            ("allowance", "allow"),
            ("inference", "infer"),
            ("airliner", "airlin"),
            ("gyroscopic", "gyroscop"),
            ("adjustable", "adjust"),
            ("defensible", "defens"),
            ("irritant", "irrit"),
            ("replacement", "replac"),
            ("adjustment", "adjust"),
            ("dependent", "depend"),
            ("adoption", "adopt"),
            ("homologous", "homolog"),
            ("communism", "commun"),
            ("activate", "activ"),
            ("angularity", "angular"),
            ("effective", "effect"),
            ("bowdlerize", "bowdler"),
            ("probate", "probat"),
            ("rate", "rate"),
            ("cease", "ceas"),
            ("controlling", "control"),
            ("roll", "roll"),
            ("generalizations", "gener"),
            ("oscillators", "oscil"),
        ] {
            assert_eq!(stem(word), expected, "{word}");
        }
        // Left alone: short words, digits, anything outside a to z.
        for word in ["is", "as", "x86", "café", "2024"] {
            assert_eq!(stem(word), word);
        }
    }

    #[test]
    fn evidence_is_verbatim_and_bounded() {
        let long = format!("The thread {}", "very ".repeat(100));
        let text = format!("Locks help. Locks help.\nNo keyword here! {long}");
        let r = assess(&script(), &answer("a", &text));
        let evidence: Vec<&str> = r["questions"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(evidence.len(), 2, "{evidence:?}");
        assert_eq!(evidence[0], "Locks help.");
        assert!(evidence[1].starts_with("The thread very"));
        assert!(evidence[1].len() <= MAX_QUOTE_BYTES);
        assert!(evidence.iter().all(|e| text.contains(e)));
    }

    #[test]
    fn the_summary_counts_answers_and_names_the_extremes() {
        let r = assess(&script(), &answer("a", "Locking the shared state."));
        assert_eq!(
            r["summary"],
            "Thank you for your interview: you answered 1 of 2 questions. Your answers have been \
             recorded and assessed; the team will be in touch about next steps."
        );
        assert_eq!(r["overall_score"], 25);
        let both = vec![
            ("a".to_owned(), "Locking the shared state.".to_owned()),
            ("b".to_owned(), "two words".to_owned()),
        ];
        let r = assess(&script(), &both);
        assert!(r["summary"]
            .as_str()
            .unwrap()
            .starts_with("Thank you for your interview: you answered all 2 questions."));
        assert_eq!(r["overall_score"], 75);
        // The summary may be all a candidate sees: it holds no number.
        assert!(!r["summary"]
            .as_str()
            .unwrap()
            .chars()
            .any(|c| c.is_ascii_digit() && c != '2'));
    }

    #[test]
    fn is_deterministic() {
        let answers = answer("b", "two words");
        assert_eq!(assess(&script(), &answers), assess(&script(), &answers));
    }
}
