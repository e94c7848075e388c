//! Transforms: components between sources and sinks that change or select
//! events. Each runs as one async task reading batches from its inputs.
//!
//! Only `filter` exists so far; the task loop here is shared by all.

pub mod condition;

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::event::{Batch, SharedBatch};
use crate::telemetry::{Counter, Registry};
use crate::topology::fanout::Fanout;
use condition::{Condition, ConditionConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub condition: ConditionConfig,
}

/// Keeps the events that match the condition. Removed events count as
/// delivered: the batch's acknowledgement travels on with what is left, so
/// their bytes may be checkpointed once the rest is delivered.
pub struct Filter {
    condition: Condition,
    discarded: Counter,
}

impl Filter {
    pub fn new(condition: Condition, registry: &Registry, name: &str) -> Self {
        Filter {
            condition,
            discarded: registry.counter(
                "weir_events_discarded_total",
                "Events a transform removed on purpose, by transform.",
                &[("transform", name)],
            ),
        }
    }

    pub fn apply(&mut self, mut batch: Batch) -> Batch {
        let before = batch.events.len();
        batch.events.retain(|e| self.condition.matches(e));
        self.discarded.add((before - batch.events.len()) as u64);
        batch
    }
}

/// Runs a transform until its inputs close.
pub async fn run(mut filter: Filter, mut input: mpsc::Receiver<SharedBatch>, output: Fanout) {
    while let Some(shared) = input.recv().await {
        let out = filter.apply(shared.into_batch());
        if output.send(out).await.is_err() {
            break;
        }
    }
    output.close();
}
