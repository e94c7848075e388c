//! LLM token and cost counters: tokens × a per-model price table, booked to
//! the day of each event's own time, against a daily budget.
//!
//! Derived series (the names the seed plan's dashboards and alert rules use):
//! `llm_tokens_used_total{model,type}` (type = prompt | completion),
//! `llm_costs_total_usd{model,provider}`, `llm_daily_costs_usd{date}`,
//! `llm_daily_model_costs_usd{date,model}`,
//! `llm_daily_budget_remaining_usd{date}` and `llm_daily_budget_usd`.
//! A replay of last week's logs books last week's days; days older than
//! `keep_days` before the newest day seen are dropped. A model missing from
//! the table is counted under its own name at cost 0 and in
//! `weir_llm_unpriced_events_total`.
//!
//! Bounded like every metric: each cost family holds at most `max_series`
//! series (the sink's, unless `costs.max_series` says otherwise); past it,
//! new models (or dates) are booked to the `__overflow__` series, so totals
//! stay right while memory stays flat. The store counts those samples and
//! [`super::Derived`] reports them. Unpriced models are named in a warning
//! for the first [`UNPRICED_WARNINGS`] only, then one warning says there are
//! more; nothing here remembers every model it has seen. What this module
//! does not do: fetch prices, or keep costs across restarts.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::store::{FamilyId, Kind, Store};
use crate::config::invalid::Invalid;
use crate::event::Event;
use crate::telemetry::Counter;
use crate::transform::condition::{Condition, ConditionConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per 1,000 prompt tokens.
    pub prompt: f64,
    /// USD per 1,000 completion tokens.
    pub completion: f64,
    pub provider: String,
}

/// The seed plan's table (section 3.4, "2024 prices").
pub fn default_prices() -> BTreeMap<String, Price> {
    let p = |prompt, completion, provider: &str| Price {
        prompt,
        completion,
        provider: provider.to_string(),
    };
    BTreeMap::from([
        ("gpt-4o".to_string(), p(0.005, 0.015, "openai")),
        ("gpt-4".to_string(), p(0.03, 0.06, "openai")),
        ("gpt-3.5-turbo".to_string(), p(0.001, 0.002, "openai")),
        ("glm-4".to_string(), p(0.001, 0.001, "zhipu")),
    ])
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    pub when: Option<ConditionConfig>,
    #[serde(default = "model_field")]
    pub model_field: String,
    /// Where to find the provider of a model missing from the table.
    pub provider_field: Option<String>,
    #[serde(default = "prompt_field")]
    pub prompt_tokens_field: String,
    #[serde(default = "completion_field")]
    pub completion_tokens_field: String,
    /// Overrides and additions to the default price table.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// IANA zone whose calendar days costs are booked to.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "keep_days")]
    pub keep_days: u32,
    pub daily_budget_usd: Option<f64>,
    /// Bound on the series of each cost metric (default: the sink's `max_series`).
    pub max_series: Option<usize>,
}

fn model_field() -> String {
    "model".into()
}
fn prompt_field() -> String {
    "prompt_tokens".into()
}
fn completion_field() -> String {
    "completion_tokens".into()
}
fn utc() -> String {
    "UTC".into()
}
fn keep_days() -> u32 {
    7
}

/// How many distinct unpriced models are named in a warning each; past
/// them, one more warning says there are others.
pub const UNPRICED_WARNINGS: usize = 10;

pub struct Costs {
    when: Option<Condition>,
    model_field: String,
    provider_field: Option<String>,
    prompt_field: String,
    completion_field: String,
    prices: BTreeMap<String, Price>,
    zone: Option<jiff::tz::TimeZone>,
    keep_days: i64,
    budget: Option<f64>,
    tokens: FamilyId,
    cost: FamilyId,
    daily: FamilyId,
    /// The day's cost by model: what the live page and the back-test
    /// report break the budget down by (`llm_daily_costs_usd` keeps the
    /// plan's shape, one series per day, for its `> 100` rule).
    daily_by_model: FamilyId,
    remaining: FamilyId,
    budget_family: FamilyId,
    /// Day number (days since the epoch, in the zone) → date text.
    newest_day: Option<i64>,
    day_cache: Option<(i64, i64, String)>,
    /// Unpriced models already named in a warning (at most [`UNPRICED_WARNINGS`]).
    warned: HashSet<String>,
    /// Whether the "more unpriced models" warning was given.
    warned_more: bool,
    unpriced: Counter,
}

impl CostConfig {
    /// Checks the block and registers its families in `store`, each bounded
    /// by `max_series` unless the block sets its own.
    pub fn compile<S: std::hash::BuildHasher + Clone>(
        &self,
        store: &mut Store<S>,
        default_max_series: usize,
        unpriced: Counter,
    ) -> Result<Costs, Invalid> {
        let max_series = self.max_series.unwrap_or(default_max_series);
        let when = match &self.when {
            None => None,
            Some(c) => Some(c.compile().map_err(|e| e.under("when"))?),
        };
        let zone = if self.timezone == "UTC" {
            None
        } else {
            Some(
                jiff::tz::TimeZone::get(&self.timezone).map_err(|e| Invalid {
                    path: vec!["timezone".into()],
                    message: format!("unknown time zone `{}`: {e}", self.timezone),
                })?,
            )
        };
        for (model, p) in &self.prices {
            if !(p.prompt >= 0.0 && p.completion >= 0.0) {
                return Err(Invalid {
                    path: vec!["prices".into(), model.clone()],
                    message: "prices are USD per 1K tokens and cannot be negative".into(),
                });
            }
        }
        let mut prices = default_prices();
        prices.extend(self.prices.clone());
        let l = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let fam = |store: &mut Store<S>, name: &str, help: &str, kind: Kind, labels: &[&str]| {
            // A family without labels has one series: nothing to bound.
            let max = if labels.is_empty() {
                usize::MAX
            } else {
                max_series
            };
            store
                .family(name, help, kind, &l(labels), max)
                .map_err(|m| Invalid {
                    path: vec![],
                    message: m,
                })
        };
        Ok(Costs {
            tokens: fam(
                store,
                "llm_tokens_used_total",
                "LLM tokens used, by model and type (prompt, completion).",
                Kind::Counter,
                &["model", "type"],
            )?,
            cost: fam(
                store,
                "llm_costs_total_usd",
                "LLM cost in USD, by model and provider.",
                Kind::Counter,
                &["model", "provider"],
            )?,
            daily: fam(
                store,
                "llm_daily_costs_usd",
                "LLM cost in USD booked to each day of the events' own time.",
                Kind::Gauge,
                &["date"],
            )?,
            daily_by_model: fam(
                store,
                "llm_daily_model_costs_usd",
                "LLM cost in USD booked to each day of the events' own time, by model.",
                Kind::Gauge,
                &["date", "model"],
            )?,
            remaining: fam(
                store,
                "llm_daily_budget_remaining_usd",
                "The daily budget minus that day's LLM cost, in USD.",
                Kind::Gauge,
                &["date"],
            )?,
            budget_family: fam(
                store,
                "llm_daily_budget_usd",
                "The daily LLM budget in USD (DAILY_COST_LIMIT_USD).",
                Kind::Gauge,
                &[],
            )?,
            when,
            model_field: self.model_field.clone(),
            provider_field: self.provider_field.clone(),
            prompt_field: self.prompt_tokens_field.clone(),
            completion_field: self.completion_tokens_field.clone(),
            prices,
            zone,
            keep_days: i64::from(self.keep_days),
            budget: self.daily_budget_usd,
            newest_day: None,
            day_cache: None,
            warned: HashSet::new(),
            warned_more: false,
            unpriced,
        })
    }
}

const DAY_NANOS: i64 = 86_400_000_000_000;

impl Costs {
    /// The day number and date text of an event time, in the zone.
    fn day(&mut self, time: i64) -> (i64, String) {
        // Within one UTC-offset-stable stretch the day changes at most once
        // per 24 h; cache by UTC day and offset-free check.
        let utc_day = time.div_euclid(DAY_NANOS);
        if self.zone.is_none() {
            if let Some((d, _, text)) = &self.day_cache
                && *d == utc_day
            {
                return (utc_day, text.clone());
            }
            let ts = jiff::Timestamp::from_nanosecond(i128::from(time))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let text = ts.strftime("%Y-%m-%d").to_string();
            self.day_cache = Some((utc_day, utc_day, text.clone()));
            return (utc_day, text);
        }
        let tz = self.zone.clone().expect("checked above");
        let ts = jiff::Timestamp::from_nanosecond(i128::from(time))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let date = ts.to_zoned(tz).date();
        let day = crate::decode::timestamp::days_from_civil(
            i32::from(date.year()),
            date.month() as u32,
            date.day() as u32,
        );
        (day, date.strftime("%Y-%m-%d").to_string())
    }

    /// The condition, for callers that index by field value.
    pub fn when(&self) -> Option<&Condition> {
        self.when.as_ref()
    }

    /// Books one event; returns whether it was an LLM call.
    pub fn apply<S: std::hash::BuildHasher + Clone>(
        &mut self,
        event: &Event,
        store: &mut Store<S>,
        key: &mut String,
    ) -> bool {
        let when = self.when.take();
        let r = self.apply_if(when.as_ref(), event, store, key);
        self.when = when;
        r
    }

    /// Books the event if `condition` (what is left of `when` once the
    /// caller checked the rest) holds.
    pub fn apply_if<S: std::hash::BuildHasher + Clone>(
        &mut self,
        condition: Option<&Condition>,
        event: &Event,
        store: &mut Store<S>,
        key: &mut String,
    ) -> bool {
        if let Some(c) = condition
            && !c.matches(event)
        {
            return false;
        }
        let model = event
            .get_text(&self.model_field)
            .map(|m| m.into_owned())
            .unwrap_or_default();
        let prompt = event
            .get_f64(&self.prompt_field)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0);
        let completion = event
            .get_f64(&self.completion_field)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0);
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            let s = store.series(self.tokens, &[&model, kind], key);
            store.add(self.tokens, s, n);
        }
        let (cost, provider) = match self.prices.get(&model) {
            Some(p) => (
                (prompt / 1000.0) * p.prompt + (completion / 1000.0) * p.completion,
                p.provider.clone(),
            ),
            None => {
                self.unpriced.inc();
                self.warn_unpriced(&model);
                let provider = self
                    .provider_field
                    .as_ref()
                    .and_then(|f| event.get_text(f))
                    .map(|p| p.into_owned())
                    .unwrap_or_else(|| "unknown".into());
                (0.0, provider)
            }
        };
        let s = store.series(self.cost, &[&model, &provider], key);
        store.add(self.cost, s, cost);

        let (day, date) = self.day(event.time);
        let s = store.series(self.daily, &[&date], key);
        store.add(self.daily, s, cost);
        let m = store.series(self.daily_by_model, &[&date, &model], key);
        store.add(self.daily_by_model, m, cost);
        if let Some(budget) = self.budget {
            let spent = store.get(self.daily, s);
            let r = store.series(self.remaining, &[&date], key);
            store.set(self.remaining, r, budget - spent);
            let b = store.series::<&str>(self.budget_family, &[], key);
            store.set(self.budget_family, b, budget);
        }
        if self.newest_day.is_none_or(|n| day > n) {
            self.newest_day = Some(day);
            self.expire(store, day);
        }
        true
    }

    /// Counts unpriced events in `counter` from now on (the registered one,
    /// once the sink starts).
    pub fn count_unpriced_in(&mut self, counter: Counter) {
        self.unpriced = counter;
    }

    /// Names an unpriced model in a warning, for the first few models only.
    fn warn_unpriced(&mut self, model: &str) {
        if self.warned_more || self.warned.contains(model) {
            return;
        }
        if self.warned.len() < UNPRICED_WARNINGS {
            self.warned.insert(model.to_string());
            tracing::warn!(model = %model, "model has no price in the cost table; its tokens are counted at cost 0 (add it under costs.prices)");
        } else {
            self.warned_more = true;
            tracing::warn!(
                named = UNPRICED_WARNINGS,
                "more models have no price in the cost table; they are not named one by one, their events are counted in weir_llm_unpriced_events_total at cost 0"
            );
        }
    }

    /// Drops days older than `keep_days` before `newest`.
    fn expire<S: std::hash::BuildHasher + Clone>(&mut self, store: &mut Store<S>, newest: i64) {
        let oldest = newest - self.keep_days;
        let keep = |s: &super::store::Series| {
            let date = &*s.labels[0];
            crate::decode::timestamp::parse_iso8601(&format!("{date}T00:00:00Z")).is_none_or(|p| {
                crate::decode::timestamp::days_from_civil(p.year, p.month, p.day) >= oldest
            })
        };
        store.retain(self.daily, keep);
        store.retain(self.daily_by_model, keep);
        store.retain(self.remaining, keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(yaml: &str, store: &mut Store) -> Costs {
        crate::config::node::Node::parse(yaml)
            .unwrap()
            .deserialize::<CostConfig>()
            .unwrap()
            .compile(store, 10_000, Counter::default())
            .unwrap()
    }

    fn ev(line: &str) -> Event {
        let mut d =
            crate::decode::Decoder::new(&Default::default(), &Default::default(), "t").unwrap();
        d.decode(line.into(), 0).unwrap()
    }

    fn render(store: &Store) -> String {
        let mut s = String::new();
        store.render(&mut s);
        s
    }

    #[test]
    fn tokens_times_prices_per_model_and_day() {
        let mut st = Store::default();
        let mut c = costs("daily_budget_usd: 100\n", &mut st);
        let mut k = String::new();
        c.apply(&ev(r#"{"timestamp":"2026-11-25T23:00:00Z","model":"gpt-4o","prompt_tokens":1000,"completion_tokens":2000}"#), &mut st, &mut k);
        c.apply(&ev(r#"{"timestamp":"2026-11-26T01:00:00Z","model":"glm-4","prompt_tokens":500,"completion_tokens":500}"#), &mut st, &mut k);
        let out = render(&st);
        assert!(
            out.contains("llm_tokens_used_total{model=\"gpt-4o\",type=\"prompt\"} 1000\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_tokens_used_total{model=\"gpt-4o\",type=\"completion\"} 2000\n"),
            "{out}"
        );
        // (1000/1000)·0.005 + (2000/1000)·0.015 in binary floating point, as the plan's Python computes it.
        assert!(
            out.contains(
                "llm_costs_total_usd{model=\"gpt-4o\",provider=\"openai\"} 0.034999999999999996\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("llm_costs_total_usd{model=\"glm-4\",provider=\"zhipu\"} 0.001\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_daily_costs_usd{date=\"2026-11-25\"} 0.034999999999999996\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_daily_costs_usd{date=\"2026-11-26\"} 0.001\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_daily_budget_remaining_usd{date=\"2026-11-25\"} 99.965\n"),
            "{out}"
        );
        assert!(out.contains("llm_daily_budget_usd 100\n"), "{out}");
    }

    #[test]
    fn days_follow_the_configured_zone() {
        let mut st = Store::default();
        let mut c = costs("timezone: Asia/Shanghai\n", &mut st);
        let mut k = String::new();
        // 23:00 UTC on the 25th is 07:00 on the 26th in Shanghai.
        c.apply(&ev(r#"{"timestamp":"2026-11-25T23:00:00Z","model":"gpt-4","prompt_tokens":1000,"completion_tokens":0}"#), &mut st, &mut k);
        assert!(render(&st).contains("llm_daily_costs_usd{date=\"2026-11-26\"} 0.03\n"));
    }

    #[test]
    fn unknown_models_cost_zero_and_are_counted() {
        let mut st = Store::default();
        let unpriced = Counter::default();
        let cfg: CostConfig = crate::config::node::Node::parse("provider_field: provider\nprices: {my-model: {prompt: 1, completion: 2, provider: acme}}\n").unwrap().deserialize().unwrap();
        let mut c = cfg.compile(&mut st, 10_000, unpriced.clone()).unwrap();
        let mut k = String::new();
        c.apply(&ev(r#"{"model":"glm-4-flash","provider":"zhipu","prompt_tokens":10,"completion_tokens":5}"#), &mut st, &mut k);
        c.apply(
            &ev(r#"{"model":"my-model","prompt_tokens":1000,"completion_tokens":1000}"#),
            &mut st,
            &mut k,
        );
        let out = render(&st);
        assert!(
            out.contains("llm_costs_total_usd{model=\"glm-4-flash\",provider=\"zhipu\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_costs_total_usd{model=\"my-model\",provider=\"acme\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("llm_tokens_used_total{model=\"glm-4-flash\",type=\"completion\"} 5\n"),
            "{out}"
        );
        assert_eq!(unpriced.get(), 1);
    }

    #[test]
    fn old_days_expire() {
        let mut st = Store::default();
        let mut c = costs("keep_days: 2\n", &mut st);
        let mut k = String::new();
        for d in ["20", "21", "22", "23", "24"] {
            let line = format!(
                r#"{{"timestamp":"2026-11-{d}T12:00:00Z","model":"gpt-4","prompt_tokens":1000,"completion_tokens":0}}"#
            );
            c.apply(&ev(&line), &mut st, &mut k);
        }
        let out = render(&st);
        assert!(!out.contains("2026-11-21"), "{out}");
        assert!(
            out.contains("llm_daily_costs_usd{date=\"2026-11-22\"}"),
            "{out}"
        );
        assert!(
            out.contains("llm_daily_costs_usd{date=\"2026-11-24\"}"),
            "{out}"
        );
    }

    #[test]
    fn a_flood_of_models_stays_within_max_series_and_keeps_the_totals() {
        const MODELS: usize = 100_000;
        const MAX: usize = 100;
        let mut st = Store::default();
        let unpriced = Counter::default();
        let cfg: CostConfig = crate::config::node::Node::parse("daily_budget_usd: 10\n")
            .unwrap()
            .deserialize()
            .unwrap();
        let mut c = cfg.compile(&mut st, MAX, unpriced.clone()).unwrap();
        let mut k = String::new();
        // Every model unpriced but one (gpt-4: 0.03 per 1K prompt tokens),
        // which comes last, when the families are long full.
        for i in 0..MODELS {
            let line = format!(
                r#"{{"timestamp":"2026-11-25T12:00:00Z","model":"m-{i}","prompt_tokens":3,"completion_tokens":4}}"#
            );
            c.apply(&ev(&line), &mut st, &mut k);
        }
        c.apply(&ev(r#"{"timestamp":"2026-11-25T12:00:00Z","model":"gpt-4","prompt_tokens":1000,"completion_tokens":0}"#), &mut st, &mut k);

        for fam in [c.tokens, c.cost] {
            let f = &st.families[fam];
            assert!(
                f.series.len() <= MAX + 1,
                "{}: {} series",
                f.name,
                f.series.len()
            );
            assert!(f.overflowed > 0, "{}", f.name);
            let overflow = f
                .series
                .iter()
                .filter(|s| {
                    s.labels
                        .iter()
                        .all(|l| &**l == super::super::store::OVERFLOW)
                })
                .count();
            assert_eq!(overflow, 1, "{}", f.name);
        }
        // Nothing is lost: the overflow series carries what did not fit.
        let total = |fam: FamilyId| st.families[fam].series.iter().map(|s| s.value).sum::<f64>();
        assert_eq!(total(c.tokens), (MODELS * 7 + 1000) as f64);
        let cost = total(c.cost);
        assert!((cost - 0.03).abs() < 1e-12, "{cost}");
        let out = render(&st);
        assert!(
            out.contains(
                "llm_costs_total_usd{model=\"__overflow__\",provider=\"__overflow__\"} 0.03\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("llm_daily_costs_usd{date=\"2026-11-25\"} 0.03\n"),
            "{out}"
        );
        assert!(out.contains("llm_daily_budget_usd 10\n"), "{out}");
        // Every unpriced event is counted; only a few models are remembered.
        assert_eq!(unpriced.get(), MODELS as u64);
        assert_eq!(c.warned.len(), UNPRICED_WARNINGS);
        assert!(c.warned_more);
    }

    #[test]
    fn costs_max_series_overrides_the_sinks() {
        let mut st = Store::default();
        let cfg: CostConfig = crate::config::node::Node::parse("max_series: 3\n")
            .unwrap()
            .deserialize()
            .unwrap();
        let mut c = cfg.compile(&mut st, 10_000, Counter::default()).unwrap();
        let mut k = String::new();
        for m in ["a", "b", "c", "d", "e"] {
            let line = format!(r#"{{"model":"{m}","prompt_tokens":1,"completion_tokens":1}}"#);
            c.apply(&ev(&line), &mut st, &mut k);
        }
        assert_eq!(st.families[c.cost].series.len(), 4);
        assert_eq!(st.families[c.cost].overflowed, 2);
    }
}
