//! The `console` sink: events as JSON lines on standard output.
//!
//! weir's own log goes to standard error, so the two never mix.

use std::io::Write;

use serde::Deserialize;

use super::{BatchConfig, RetryConfig, Sink};
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
}

impl Sink for Console {
    fn encode(&mut self, event: &Event) -> usize {
        let before = self.buf.len();
        event.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.buf.len() - before
    }

    async fn deliver(&mut self) -> Result<(), super::DeliveryError> {
        let mut out = std::io::stdout().lock();
        let r = out.write_all(&self.buf).and_then(|()| out.flush());
        match r {
            Ok(()) => {
                self.buf.clear();
                Ok(())
            }
            // Nobody reads our output any more: nothing to retry.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.buf.clear();
                Err("standard output is closed".to_string().into())
            }
            Err(e) => Err(format!("writing to standard output: {e}").into()),
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
