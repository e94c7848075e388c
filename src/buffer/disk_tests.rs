//! The disk buffer in one process: what goes in comes out in order, is
//! acknowledged to its source only once on disk, survives a restart, and
//! full buffers block or drop as configured.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::disk::{self, DiskConfig};
use super::{BufferMetrics, Fsync, WhenFull};
use crate::ack::{Ack, AckToken, Settlement};
use crate::event::{Event, SharedBatch};
use crate::shutdown::Shutdown;
use crate::telemetry::Registry;

fn cfg(max_bytes: u64, when_full: WhenFull) -> DiskConfig {
    DiskConfig {
        max_bytes,
        fsync: Fsync::Batch,
        when_full,
    }
}

fn batch(seq: u64, n: usize, acks: &std_mpsc::Sender<Settlement>) -> SharedBatch {
    let events = (0..n)
        .map(|i| Event::from_text(format!("batch {seq} line {i} {}", "x".repeat(100)), 0))
        .collect();
    let token = AckToken {
        stream: 1,
        seq,
        end_offset: seq + 1,
    };
    SharedBatch {
        events: std::sync::Arc::new(events),
        ack: Some(Ack::new(token, acks.clone())),
    }
}

fn lines(b: &SharedBatch) -> Vec<String> {
    b.events.iter().map(|e| e.line().to_string()).collect()
}

struct Opened {
    input: mpsc::Sender<SharedBatch>,
    output: mpsc::Receiver<SharedBatch>,
    done: tokio::task::JoinHandle<()>,
    registry: Registry,
}

fn open(dir: &std::path::Path, c: DiskConfig) -> Opened {
    let registry = Registry::default();
    let metrics = BufferMetrics::new(&registry, "out");
    let (input, rx) = mpsc::channel(4);
    let (output, done) = disk::start(
        "out",
        dir.to_path_buf(),
        c,
        rx,
        Shutdown::default(),
        metrics,
    )
    .expect("opens");
    Opened {
        input,
        output,
        done,
        registry,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_come_out_in_order_and_are_acknowledged_once_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, settled) = std_mpsc::channel();
    let mut b = open(dir.path(), cfg(64 << 20, WhenFull::Block));
    let mut sent = Vec::new();
    for seq in 0..50 {
        let x = batch(seq, 20, &acks);
        sent.extend(lines(&x));
        b.input.send(x).await.unwrap();
    }
    drop(b.input);
    let mut got = Vec::new();
    while let Some(x) = b.output.recv().await {
        got.extend(lines(&x));
        x.delivered();
    }
    b.done.await.unwrap();
    assert_eq!(got, sent);
    let reports: Vec<Settlement> = settled.try_iter().collect();
    assert_eq!(reports.len(), 50);
    assert!(reports.iter().all(|s| s.delivered));
    let left = disk::inspect(dir.path(), false).unwrap();
    assert_eq!(
        (left.records, left.events),
        (0, 0),
        "delivered segments are deleted"
    );
    assert_eq!(b.registry.sum("weir_buffer_events"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_sink_did_not_deliver_is_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, settled) = std_mpsc::channel();
    let mut b = open(dir.path(), cfg(64 << 20, WhenFull::Block));
    let mut sent = Vec::new();
    for seq in 0..30 {
        let x = batch(seq, 10, &acks);
        sent.extend(lines(&x));
        b.input.send(x).await.unwrap();
    }
    drop(b.input);
    // The sink delivers the first ten batches, then goes away.
    for _ in 0..10 {
        b.output.recv().await.unwrap().delivered();
    }
    drop(b.output);
    b.done.await.unwrap();
    assert!(
        settled.try_iter().all(|s| s.delivered),
        "the source was acknowledged: the buffer holds the rest"
    );
    let held = disk::inspect(dir.path(), true).unwrap();
    assert_eq!(held.events, 200);

    let (acks2, _settled2) = std_mpsc::channel::<Settlement>();
    let mut again = open(dir.path(), cfg(64 << 20, WhenFull::Block));
    drop(again.input);
    drop(acks2);
    let mut got = Vec::new();
    while let Some(x) = again.output.recv().await {
        got.extend(lines(&x));
        x.delivered();
    }
    again.done.await.unwrap();
    assert_eq!(got, sent[100..].to_vec(), "the rest, in order");
    assert_eq!(again.registry.sum("weir_buffer_replayed_events_total"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_blocks_its_sources_until_the_sink_takes_some() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, _settled) = std_mpsc::channel();
    let mut b = open(dir.path(), cfg(1 << 20, WhenFull::Block));
    // ~120 KiB a batch: the 1 MiB buffer holds about eight.
    let mut blocked = false;
    for seq in 0..40 {
        let send = b.input.send(batch(seq, 1000, &acks));
        if tokio::time::timeout(Duration::from_secs(2), send)
            .await
            .is_err()
        {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the sources had to wait");
    let used = disk::inspect(dir.path(), false).unwrap();
    assert!(used.bytes <= 1 << 20, "{} bytes held", used.bytes);
    // The sink takes everything: the sources go on.
    let drain = tokio::spawn(async move {
        let mut n = 0;
        while let Some(x) = b.output.recv().await {
            n += x.events.len();
            x.delivered();
        }
        n
    });
    let more = b.input.send(batch(99, 1000, &acks));
    tokio::time::timeout(Duration::from_secs(10), more)
        .await
        .expect("room again once delivered")
        .unwrap();
    drop(b.input);
    assert!(drain.await.unwrap() >= 9000);
    b.done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, settled) = std_mpsc::channel();
    let b = open(dir.path(), cfg(1 << 20, WhenFull::DropNewest));
    for seq in 0..40 {
        tokio::time::timeout(
            Duration::from_secs(5),
            b.input.send(batch(seq, 1000, &acks)),
        )
        .await
        .expect("never blocks")
        .unwrap();
    }
    drop(b.input);
    let registry = b.registry.clone();
    let mut output = b.output;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let discarded = registry.sum("weir_buffer_discarded_events_total");
    assert!(discarded >= 20_000, "{discarded} dropped");
    let mut kept = 0;
    while let Some(x) = output.recv().await {
        kept += x.events.len() as i64;
        x.delivered();
    }
    b.done.await.unwrap();
    assert_eq!(kept + discarded, 40_000, "every event kept or counted");
    assert_eq!(settled.try_iter().count(), 40);
}
