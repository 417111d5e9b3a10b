//! Bringing the table in line with the store: a full sync (base part, every Service,
//! stale objects listed from the kernel) at start, after a failure, when this node or the
//! service ranges change and when the canary finds the table flushed; otherwise a partial
//! sync that rewrites only the changed Services' chains and map elements, atomically in one
//! transaction. Chains no longer used are flushed at once and deleted a second later
//! (kube-proxy waits too: older kernels free chains asynchronously).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conntrack::{stale_flows, Flow};
use super::names::is_service_object;
use super::nft::{Listed, Nftables, Result, Transaction};
use super::render::{
    self, Context, Element, ServiceRules, UdpPort, SERVICES_CHAIN, SERVICES_CHAIN_RULES,
};
use crate::services::{ClusterState, ServiceKey};

/// How long a flushed chain waits before it is deleted.
pub const STALE_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
}

impl SyncKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
        }
    }
}

/// What a successful sync did.
#[derive(Debug)]
pub struct Report {
    pub kind: SyncKind,
    /// UDP flows that now point at nothing (or were refused before endpoints came).
    pub flows: Vec<Flow>,
}

/// One element of a map or set, and which Service wrote it.
type ElementKey = (&'static str, String);

/// What one Service has in the kernel, as the next sync needs it: the names of its sets
/// and chains, its elements and UDP ports, and of each chain's rules only a hash (they
/// are only compared), so 10,000 Services do not keep every rule's text twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Programmed {
    sets: Vec<(String, u32)>,
    chains: Vec<(String, u64)>,
    elements: Vec<Element>,
    udp: Vec<UdpPort>,
}

impl Programmed {
    fn of(rules: &ServiceRules) -> Self {
        use std::hash::{Hash, Hasher};
        let chains = rules
            .chains
            .iter()
            .map(|(chain, lines)| {
                // DefaultHasher::new() has fixed keys: equal rules give equal hashes.
                let mut h = std::collections::hash_map::DefaultHasher::new();
                lines.hash(&mut h);
                (chain.clone(), h.finish())
            })
            .collect();
        Self {
            sets: rules.sets.clone(),
            chains,
            elements: rules.elements.clone(),
            udp: rules.udp.clone(),
        }
    }
}

pub struct Syncer {
    nft: Arc<dyn Nftables>,
    table: String,
    ctx: Option<Context>,
    /// What each Service has in the kernel now (as far as this agent wrote it).
    programmed: HashMap<ServiceKey, Programmed>,
    /// Element → its owner; two Services claiming one address: the first keeps it.
    elements: HashMap<ElementKey, ServiceKey>,
    /// Flushed chains waiting for deletion, with the time they were flushed.
    stale: HashMap<String, Instant>,
    need_full: bool,
    /// No full sync has succeeded yet in this process.
    first: bool,
}

impl Syncer {
    pub fn new(nft: Arc<dyn Nftables>, table: &str) -> Self {
        Self {
            nft,
            table: table.to_string(),
            ctx: None,
            programmed: HashMap::new(),
            elements: HashMap::new(),
            stale: HashMap::new(),
            need_full: true,
            first: true,
        }
    }

    pub fn needs_full(&self) -> bool {
        self.need_full
    }

    /// Whether this node's addresses or the service ranges differ from the last full sync.
    pub fn context_changed(&self, ctx: &Context) -> bool {
        self.ctx.as_ref() != Some(ctx)
    }

    /// Forces the next sync to be a full one (after a failure, hourly, canary lost).
    pub fn want_full(&mut self) {
        self.need_full = true;
    }

    /// Whether the `services` chain still holds its two dispatch rules; a flushed or
    /// deleted table (or chain) fails this.
    pub async fn canary_ok(&self) -> Result<bool> {
        let count = self.nft.rule_count(&self.table, SERVICES_CHAIN).await?;
        Ok(count == Some(SERVICES_CHAIN_RULES))
    }

    /// When the oldest stale chain may be deleted.
    pub fn next_deletion(&self) -> Option<Instant> {
        self.stale.values().min().map(|t| *t + STALE_DELAY)
    }

    /// Syncs `changed` Services (all of them when a full sync is due or `ctx` changed).
    pub async fn sync(
        &mut self,
        state: &ClusterState,
        changed: &BTreeSet<ServiceKey>,
        ctx: Context,
        now: Instant,
    ) -> Result<Report> {
        if self.ctx.as_ref() != Some(&ctx) {
            self.need_full = true;
        }
        let result = if self.need_full {
            self.full(state, ctx, now).await
        } else {
            self.partial(state, changed, &ctx, now).await
        };
        if result.is_err() {
            self.need_full = true;
        }
        result
    }

    async fn full(&mut self, state: &ClusterState, ctx: Context, now: Instant) -> Result<Report> {
        let existing_chains = self.nft.list(&self.table, Listed::Chains).await?;
        let existing_sets = self.nft.list(&self.table, Listed::Sets).await?;
        let mut tx = Transaction::new(&self.table);
        render::base(&ctx, &mut tx, self.first);

        let mut services = state.services();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut programmed = HashMap::new();
        let mut elements: HashMap<ElementKey, ServiceKey> = HashMap::new();
        for (key, service) in services {
            let rules = render::service_rules(&ctx, &key, &service, &state.slices(&key));
            if rules == ServiceRules::default() {
                continue;
            }
            write_objects(&rules, &mut tx);
            for e in &rules.elements {
                let slot = (e.set, e.key.clone());
                if elements.contains_key(&slot) {
                    continue;
                }
                tx.add_element(e.set, &e.text());
                elements.insert(slot, key.clone());
            }
            programmed.insert(key, Programmed::of(&rules));
        }
        let wanted_chains: BTreeSet<&str> = programmed
            .values()
            .flat_map(|r| r.chains.iter().map(|(c, _)| c.as_str()))
            .collect();
        let wanted_sets: BTreeSet<&str> = programmed
            .values()
            .flat_map(|r| r.sets.iter().map(|(s, _)| s.as_str()))
            .collect();
        let mut stale = HashMap::new();
        for chain in existing_chains
            .iter()
            .filter(|c| is_service_object(c) && !wanted_chains.contains(c.as_str()))
        {
            tx.flush_chain(chain);
            let since = self.stale.get(chain).copied().unwrap_or(now);
            stale.insert(chain.clone(), since);
        }
        for set in existing_sets
            .iter()
            .filter(|s| is_service_object(s) && !wanted_sets.contains(s.as_str()))
        {
            tx.delete_set(set);
        }
        self.nft.run(&tx).await?;

        let mut flows = Vec::new();
        for (key, rules) in &programmed {
            let old = self.programmed.get(key).map_or(&[][..], |p| &p.udp[..]);
            flows.extend(stale_flows(old, &rules.udp));
        }
        for (key, old) in &self.programmed {
            if !programmed.contains_key(key) {
                flows.extend(stale_flows(&old.udp, &[]));
            }
        }
        self.programmed = programmed;
        self.elements = elements;
        self.stale = stale;
        self.ctx = Some(ctx);
        self.need_full = false;
        self.first = false;
        Ok(Report {
            kind: SyncKind::Full,
            flows,
        })
    }

    async fn partial(
        &mut self,
        state: &ClusterState,
        changed: &BTreeSet<ServiceKey>,
        ctx: &Context,
        now: Instant,
    ) -> Result<Report> {
        let mut tx = Transaction::new(&self.table);
        let mut updates = Vec::new();
        for key in changed {
            let old = self.programmed.get(key).cloned().unwrap_or_default();
            let new = state
                .service(key)
                .map(|s| render::service_rules(ctx, key, &s, &state.slices(key)))
                .unwrap_or_default();
            if old != Programmed::of(&new) {
                updates.push((key.clone(), old, new));
            }
        }
        if updates.is_empty() {
            return Ok(Report {
                kind: SyncKind::Partial,
                flows: Vec::new(),
            });
        }
        // Only the changed Services' elements are looked at; the bookkeeping of all of them
        // (tens of thousands at 10k Services) is updated once the transaction succeeded.
        let mut removed: HashSet<ElementKey> = HashSet::new();
        let mut added: HashMap<ElementKey, ServiceKey> = HashMap::new();
        // Elements that go or change first, so a re-added key never meets its old value.
        for (key, old, new) in &updates {
            for e in &old.elements {
                let slot = (e.set, e.key.clone());
                let owned = self.elements.get(&slot).is_some_and(|owner| owner == key);
                let kept = new.elements.iter().any(|n| n == e);
                if owned && !kept && removed.insert(slot.clone()) {
                    tx.delete_element(e.set, &e.key);
                }
            }
        }
        let mut unstale = Vec::new();
        let mut stale = Vec::new();
        for (key, _, new) in &updates {
            write_objects(new, &mut tx);
            unstale.extend(new.chains.iter().map(|(c, _)| c.clone()));
            for e in &new.elements {
                let slot = (e.set, e.key.clone());
                let present = (self.elements.contains_key(&slot) && !removed.contains(&slot))
                    || added.contains_key(&slot);
                if present {
                    continue;
                }
                tx.add_element(e.set, &e.text());
                added.insert(slot, key.clone());
            }
        }
        for (_, old, new) in &updates {
            for (chain, _) in &old.chains {
                if !new.chains.iter().any(|(c, _)| c == chain) {
                    tx.flush_chain(chain);
                    stale.push(chain.clone());
                }
            }
            for (set, _) in &old.sets {
                if !new.sets.iter().any(|(s, _)| s == set) {
                    tx.delete_set(set);
                }
            }
        }
        // Chains flushed long enough ago go in this transaction: under churn that spares
        // the kernel a transaction of their own (each one validates the whole table, tens
        // of milliseconds at 10,000 Services) that a change arriving meanwhile would wait for.
        let due: Vec<String> = self
            .stale
            .iter()
            .filter(|(chain, t)| {
                **t + STALE_DELAY <= now && !unstale.contains(*chain) && !stale.contains(*chain)
            })
            .map(|(chain, _)| chain.clone())
            .collect();
        for chain in &due {
            tx.delete_chain(chain);
        }
        self.nft.run(&tx).await?;
        for chain in &due {
            self.stale.remove(chain);
        }

        let mut flows = Vec::new();
        for (key, old, new) in updates {
            flows.extend(stale_flows(&old.udp, &new.udp));
            if new == ServiceRules::default() {
                self.programmed.remove(&key);
            } else {
                self.programmed.insert(key, Programmed::of(&new));
            }
        }
        for slot in removed {
            self.elements.remove(&slot);
        }
        self.elements.extend(added);
        for chain in unstale {
            self.stale.remove(&chain);
        }
        for chain in stale {
            self.stale.insert(chain, now);
        }
        Ok(Report {
            kind: SyncKind::Partial,
            flows,
        })
    }

    /// Deletes the chains flushed at least a second ago, in a transaction of their own.
    pub async fn delete_stale(&mut self, now: Instant) -> Result<()> {
        let due: Vec<String> = self
            .stale
            .iter()
            .filter(|(_, t)| **t + STALE_DELAY <= now)
            .map(|(c, _)| c.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut tx = Transaction::new(&self.table);
        for chain in &due {
            tx.delete_chain(chain);
        }
        for chain in &due {
            self.stale.remove(chain);
        }
        let result = self.nft.run(&tx).await;
        if result.is_err() {
            // The table changed under us: the next full sync lists what is really there.
            self.need_full = true;
        }
        result
    }
}

/// A Service's sets, chains and rules (its elements go through the element bookkeeping).
fn write_objects(rules: &ServiceRules, tx: &mut Transaction) {
    let objects = ServiceRules {
        elements: Vec::new(),
        ..rules.clone()
    };
    objects.write(tx);
}
