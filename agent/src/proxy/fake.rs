//! A recording stand-in for nftables (tests only): keeps every transaction's text and a
//! small model of the table (chains with their rule counts, sets and maps) that follows
//! the kernel's all-or-nothing rule and its refusals of missing objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::nft::{Error, Listed, Nftables, Result, Transaction};

#[derive(Debug, Default, Clone)]
struct Table {
    chains: BTreeMap<String, usize>,
    sets: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct FakeNftables {
    tables: Mutex<BTreeMap<String, Table>>,
    log: Mutex<Vec<String>>,
    /// This many next transactions fail as nft would.
    failures: AtomicUsize,
}

impl FakeNftables {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text of every transaction applied (or refused), in order.
    pub fn transactions(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// `nft flush table`: every chain loses its rules.
    pub fn flush_table(&self, table: &str) {
        if let Some(t) = self.tables.lock().unwrap().get_mut(table) {
            t.chains.values_mut().for_each(|n| *n = 0);
        }
    }

    pub fn delete_table(&self, table: &str) {
        self.tables.lock().unwrap().remove(table);
    }

    pub fn chains(&self, table: &str) -> Vec<String> {
        let tables = self.tables.lock().unwrap();
        tables
            .get(table)
            .map(|t| t.chains.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn apply(tables: &mut BTreeMap<String, Table>, line: &str) -> Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let missing = || Error::NotFound(format!("{line}: No such file or directory"));
    let (verb, kind, table) = (words[0], words[1], words[3]);
    let name = words.get(4).copied().unwrap_or_default().to_string();
    if kind == "table" {
        match verb {
            "add" => {
                tables.entry(table.to_string()).or_default();
            }
            "delete" => {
                tables.remove(table).ok_or_else(missing)?;
            }
            _ => {}
        }
        return Ok(());
    }
    let t = tables.get_mut(table).ok_or_else(missing)?;
    match (verb, kind) {
        ("add", "chain") => {
            t.chains.entry(name).or_insert(0);
        }
        ("flush", "chain") => *t.chains.get_mut(&name).ok_or_else(missing)? = 0,
        ("delete", "chain") => {
            t.chains.remove(&name).ok_or_else(missing)?;
        }
        ("add", "rule") => *t.chains.get_mut(&name).ok_or_else(missing)? += 1,
        ("add", "set") | ("add", "map") => {
            t.sets.insert(name);
        }
        ("delete", "set") => {
            t.sets.remove(&name).then_some(()).ok_or_else(missing)?;
        }
        ("flush", "set") | ("flush", "map") | ("add", "element") | ("delete", "element") => {
            t.sets.contains(&name).then_some(()).ok_or_else(missing)?;
        }
        _ => return Err(Error::Failed(format!("fake nft does not know {line:?}"))),
    }
    Ok(())
}

#[async_trait]
impl Nftables for FakeNftables {
    async fn run(&self, tx: &Transaction) -> Result<()> {
        self.log.lock().unwrap().push(tx.text().to_string());
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Failed("injected failure".into()));
        }
        let mut tables = self.tables.lock().unwrap();
        let mut copy = tables.clone();
        for line in tx.text().lines() {
            apply(&mut copy, line)?;
        }
        *tables = copy;
        Ok(())
    }

    async fn list(&self, table: &str, kind: Listed) -> Result<Vec<String>> {
        let tables = self.tables.lock().unwrap();
        let Some(t) = tables.get(table) else {
            return Ok(Vec::new());
        };
        Ok(match kind {
            Listed::Chains => t.chains.keys().cloned().collect(),
            Listed::Sets => t.sets.iter().cloned().collect(),
        })
    }

    async fn rule_count(&self, table: &str, chain: &str) -> Result<Option<usize>> {
        let tables = self.tables.lock().unwrap();
        Ok(tables.get(table).and_then(|t| t.chains.get(chain).copied()))
    }
}
