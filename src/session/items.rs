//! The conversation so far, indexed so that every client event costs
//! O(log n) at most: looking an item up, deleting it, and the number of
//! words said in answer to a question (kept as a running count rather than
//! recounted on every `response.create`).

use std::collections::{BTreeMap, HashMap};

use crate::protocol::Item;
use crate::script::word_count;

#[derive(Default)]
pub struct Items {
    /// The items in conversation order, by sequence number.
    by_seq: BTreeMap<u64, Item>,
    seq_of: HashMap<String, u64>,
    next_seq: u64,
    /// The question each candidate item answers, and its word count.
    answers: HashMap<u64, (String, usize)>,
    /// Words said so far in answer to each question.
    words_by_question: HashMap<String, usize>,
}

impl Items {
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub fn last_id(&self) -> Option<&str> {
        self.by_seq.values().next_back().map(|i| i.id.as_str())
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.seq_of.get(id).and_then(|seq| self.by_seq.get(seq))
    }

    /// Adds an item; `answers` names the question a candidate's item
    /// answers.
    pub fn push(&mut self, item: Item, answers: Option<String>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(question) = answers {
            let words = word_count(&item.text);
            *self.words_by_question.entry(question.clone()).or_default() += words;
            self.answers.insert(seq, (question, words));
        }
        self.seq_of.insert(item.id.clone(), seq);
        self.by_seq.insert(seq, item);
    }

    pub fn remove(&mut self, id: &str) -> Option<Item> {
        let seq = self.seq_of.remove(id)?;
        if let Some((question, words)) = self.answers.remove(&seq) {
            if let Some(total) = self.words_by_question.get_mut(&question) {
                *total -= words;
            }
        }
        self.by_seq.remove(&seq)
    }

    /// Words said in answer to `question`, over every item not deleted.
    pub fn words_for(&self, question: &str) -> usize {
        self.words_by_question.get(question).copied().unwrap_or(0)
    }

    /// Every item, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.by_seq.values()
    }

    /// Every item in order, with the question a candidate's item answers.
    pub fn iter_with_questions(&self) -> impl Iterator<Item = (&Item, Option<&str>)> {
        self.by_seq
            .iter()
            .map(|(seq, item)| (item, self.answers.get(seq).map(|(q, _)| q.as_str())))
    }

    /// The candidate's answers in order, as (question id, text).
    pub fn answers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_seq.iter().filter_map(|(seq, item)| {
            self.answers
                .get(seq)
                .map(|(q, _)| (q.as_str(), item.text.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;

    fn item(id: &str, text: &str) -> Item {
        Item {
            id: id.into(),
            role: Role::User,
            text: text.into(),
        }
    }

    #[test]
    fn word_counts_follow_additions_and_deletions() {
        let mut items = Items::default();
        items.push(item("a", "one two three"), Some("q1".into()));
        items.push(item("b", "four"), Some("q1".into()));
        items.push(item("c", "five six"), Some("q2".into()));
        assert_eq!(items.words_for("q1"), 4);
        assert_eq!(items.remove("a").unwrap().text, "one two three");
        assert_eq!(items.words_for("q1"), 1);
        assert!(items.remove("a").is_none());
        assert_eq!(items.last_id(), Some("c"));
        let answers: Vec<_> = items.answers().collect();
        assert_eq!(answers, vec![("q1", "four"), ("q2", "five six")]);
        assert_eq!(items.len(), 2);
    }
}
