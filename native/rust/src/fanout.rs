//! Fan-out batching, the twin of `sandcat/_native/fanout.py`.
//!
//! From a group message's recipients (each with its seq and its gateway, `None` when
//! offline) to one push batch per gateway and one inbox write batch per shard collection,
//! both in order of first appearance, each keeping the recipients' order.

use std::collections::HashMap;
use std::hash::Hash;

use crate::shard::{check_month, check_shards, collection_name, shard_of, RangeError};

/// The batches of one message; `T` is a recipient entry, `G` a gateway id.
#[derive(Debug)]
pub struct Plan<G, T> {
    /// `(gateway, entries)` in order of the gateway's first appearance.
    pub pushes: Vec<(G, Vec<T>)>,
    /// `(collection name, entries)` in order of the shard's first appearance.
    pub inbox: Vec<(String, Vec<T>)>,
}

/// Builds a [`Plan`] one recipient at a time.
pub struct Planner<G, T> {
    month: i64,
    user_shards: u64,
    gateway_slot: HashMap<G, usize>,
    shard_slot: Vec<Option<usize>>,
    plan: Plan<G, T>,
}

impl<G: Hash + Eq + Clone, T: Clone> Planner<G, T> {
    pub fn new(month: i64, user_shards: i64) -> Result<Self, RangeError> {
        let month = check_month(month)?;
        let user_shards = check_shards(user_shards)?;
        Ok(Self {
            month,
            user_shards,
            gateway_slot: HashMap::new(),
            shard_slot: vec![None; user_shards as usize],
            plan: Plan {
                pushes: Vec::new(),
                inbox: Vec::new(),
            },
        })
    }

    /// One recipient: `id` is its UTF-8 user id, `entry` what goes into the batches.
    pub fn add(&mut self, id: &[u8], gateway: Option<G>, entry: T) {
        if let Some(gateway) = gateway {
            let pushes = &mut self.plan.pushes;
            let slot = *self.gateway_slot.entry(gateway).or_insert_with_key(|gw| {
                pushes.push((gw.clone(), Vec::new()));
                pushes.len() - 1
            });
            pushes[slot].1.push(entry.clone());
        }
        let shard = shard_of(id, self.user_shards);
        let slot = match self.shard_slot[shard as usize] {
            Some(slot) => slot,
            None => {
                let inbox = &mut self.plan.inbox;
                inbox.push((collection_name(self.month, shard), Vec::new()));
                self.shard_slot[shard as usize] = Some(inbox.len() - 1);
                inbox.len() - 1
            }
        };
        self.plan.inbox[slot].1.push(entry);
    }

    pub fn finish(self) -> Plan<G, T> {
        self.plan
    }
}

/// The whole plan for `(recipient id, seq, gateway)` triples.
pub fn plan<'a>(
    recipients: &[(&'a str, i64, Option<&'a str>)],
    month: i64,
    user_shards: i64,
) -> Result<Plan<&'a str, (&'a str, i64)>, RangeError> {
    let mut planner = Planner::new(month, user_shards)?;
    for &(id, seq, gateway) in recipients {
        planner.add(id.as_bytes(), gateway, (id, seq));
    }
    Ok(planner.finish())
}
