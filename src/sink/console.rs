//! The `console` sink: events as JSON lines on standard output.
//!
//! weir's own log goes to standard error, so the two never mix.

use std::io::Write;

use serde::Deserialize;

use super::{BatchConfig, Call, DeliveryError, RetryConfig, Sink, done};
use crate::component::{CheckCx, Kind, SinkContext, SinkKind, SinkSpec};
use crate::event::Event;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default)]
    pub batch: Option<BatchConfig>,
}

#[derive(Default)]
pub struct Console {
    buf: Vec<u8>,
    /// The last batch's buffer, for the next one.
    spare: Vec<u8>,
}

impl Sink for Console {
    type Batch = Vec<u8>;
    type Reply = Result<(), DeliveryError>;

    fn encode(&mut self, event: &Event) -> usize {
        let before = self.buf.len();
        event.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.buf.len() - before
    }

    fn seal(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare))
    }

    fn send(&mut self, batch: &mut Vec<u8>) -> Call<Self::Reply> {
        let mut out = std::io::stdout().lock();
        let r = out.write_all(batch).and_then(|()| out.flush());
        done(match r {
            Ok(()) => Ok(()),
            // Nobody reads our output any more: nothing to retry.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                batch.clear();
                Err("standard output is closed".to_string().into())
            }
            Err(e) => Err(format!("writing to standard output: {e}").into()),
        })
    }

    fn answer(&mut self, _batch: &mut Vec<u8>, reply: Self::Reply) -> Result<(), DeliveryError> {
        reply
    }

    fn recycle(&mut self, mut batch: Vec<u8>) {
        batch.clear();
        if batch.capacity() <= 4 << 20 {
            self.spare = batch;
        }
    }
}

/// The `console` sink kind.
pub const KIND: SinkKind = Kind {
    name: "console",
    check,
};

#[derive(Debug)]
struct ConsoleSpec {
    cfg: ConsoleConfig,
}

impl SinkSpec for ConsoleSpec {
    fn start(&self, cx: SinkContext) -> Result<tokio::task::JoinHandle<()>, String> {
        let batch = self.cfg.batch.unwrap_or(BatchConfig {
            timeout: crate::config::units::Dur(std::time::Duration::from_millis(100)),
            ..BatchConfig::default()
        });
        Ok(super::spawn(
            cx,
            Console::default(),
            batch,
            RetryConfig::default(),
        ))
    }
}

fn check(cx: &mut CheckCx<'_>) -> Option<std::sync::Arc<dyn SinkSpec>> {
    let cfg: ConsoleConfig = cx.typed()?;
    Some(std::sync::Arc::new(ConsoleSpec { cfg }))
}
