//! Transforms: components between sources and sinks that change or select
//! events. Each runs as one async task reading batches from its inputs.
//!
//! Only `filter` exists so far; the task loop here is shared by all.

pub mod condition;

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::component::{CheckCx, Kind, TransformContext, TransformKind, TransformSpec};
use crate::event::{Batch, SharedBatch};
use crate::fanout::Fanout;
use crate::telemetry::{Counter, Registry};
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

/// The `filter` transform kind.
pub const FILTER: TransformKind = Kind {
    name: "filter",
    check: check_filter,
};

#[derive(Debug)]
struct FilterSpec {
    condition: Condition,
}

impl TransformSpec for FilterSpec {
    fn start(&self, cx: TransformContext) -> tokio::task::JoinHandle<()> {
        let f = Filter::new(self.condition.clone(), &cx.registry, &cx.name);
        tokio::spawn(run(f, cx.input, cx.output))
    }
}

fn check_filter(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn TransformSpec>> {
    let cfg: FilterConfig = cx.typed()?;
    match cfg.condition.compile() {
        Ok(condition) => Some(std::sync::Arc::new(FilterSpec { condition })),
        Err(e) => {
            cx.report(e.under("condition"));
            None
        }
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
