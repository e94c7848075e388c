use super::*;

const T0: i64 = 1_795_586_400_000; // 2026-11-25T06:00:00Z

#[test]
fn lines_count_at_their_own_time_and_bars_hold_each_once() {
    let mut t = Timeline::new(Registry::default());
    // An hour of lines, one every second, quiet between minutes 20 and 30,
    // an error every 10 s; one late line back at minute 5.
    let mut lines: Vec<(i64, bool)> = (0..3600)
        .filter(|s| !(1200..1800).contains(s))
        .map(|s| (T0 + s * 1000, s % 10 == 0))
        .collect();
    lines.push((T0 + 300_000, true));
    for chunk in lines.chunks(97) {
        t.count(&by_slot(chunk.iter().copied()));
    }
    t.scrape(T0, None);
    t.scrape(T0 + 3_600_000, None);
    t.count_now(2, 1);
    t.close();
    let (from, to) = t.span().unwrap();
    let (width, bs) = buckets(t.slots(), from, to);
    assert_eq!(width, 60_000);
    assert_eq!(bs.len(), 60);
    assert_eq!(bs[0].start_ms, T0);
    assert_eq!(bs.iter().map(|b| b.lines).sum::<u64>(), 3000 + 1 + 2);
    assert_eq!(t.totals().lines, 3003);
    assert_eq!(bs[5].lines, 61, "the late line at its own minute");
    assert_eq!(bs[5].error_lines, 7);
    assert_eq!(bs[25].lines, 0, "the quiet stretch is a bar of zero");
    assert_eq!(bs[59].lines, 62, "untimed lines at the last step");
    assert!(
        bs.windows(2)
            .all(|w| w[1].start_ms - w[0].start_ms == width)
    );
    // A week: three-hour bars, still every line once.
    let mut w = Timeline::new(Registry::default());
    w.count(&by_slot(
        [
            (T0, false),
            (T0 + 3 * 86_400_000, true),
            (T0 + 7 * 86_400_000 - 1, false),
        ]
        .into_iter(),
    ));
    w.scrape(T0, None);
    w.scrape(T0 + 7 * 86_400_000, None);
    let (from, to) = w.span().unwrap();
    let (width, bs) = buckets(w.slots(), from, to);
    assert_eq!(width, 3 * 3_600_000);
    assert_eq!(bs.iter().map(|b| b.lines).sum::<u64>(), 3);
    assert!(buckets(&[], 0, 1).1.is_empty());
}

#[test]
fn the_page_carries_every_figure_and_fetches_nothing() {
    let registry = Registry::default();
    registry
        .counter("weir_decode_errors_total", "", &[("source", "a")])
        .add(3);
    let mut t = Timeline::new(registry);
    let cost = |date: &str, model: &str, v: f64| {
        (
            Labels::from_pairs([
                ("__name__".to_string(), DAILY_MODEL_COSTS.to_string()),
                ("date".to_string(), date.to_string()),
                ("model".to_string(), model.to_string()),
            ]),
            v,
        )
    };
    t.count(&by_slot((0..420).map(|i| (T0 + i * 200_000, i < 2))));
    t.scrape(T0, Some(&[cost("2026-11-25", "gpt-4o", 1.5)]));
    t.scrape(T0 + 15_000, None);
    t.scrape(
        T0 + 86_400_000,
        Some(&[
            cost("2026-11-25", "gpt-4o", 2.5),
            cost("2026-11-26", "glm-4", 0.25),
            (
                Labels::from_pairs([("__name__".to_string(), DAILY_BUDGET.to_string())]),
                2.0,
            ),
        ]),
    );
    t.close();
    assert_eq!(
        t.costs()["2026-11-25"]["gpt-4o"],
        2.5,
        "the newest value of the day"
    );
    let record = Record {
        group: "g".into(),
        labels: Labels::from_pairs([
            ("alertname".to_string(), "HighErrorRate".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]),
        annotations: vec![("summary".into(), "错误率 <b>过高</b>".into())],
        pending_since: T0 + 60_000,
        firing_from: Some(T0 + 120_000),
        resolved_at: None,
        peak: 0.25,
    };
    let meta = Meta {
        pipeline: "p.yaml".into(),
        rules: 1,
        late_lines: 0,
    };
    let page = html::render(&t, &[record], &meta);
    for needle in [
        r#"id="total-lines" data-value="420""#,
        r#"id="total-error-lines" data-value="2""#,
        r#"id="total-decode-errors" data-value="3""#,
        r#"id="total-alerts" data-value="1""#,
        r#"id="total-cost" data-value="2.75""#,
        r#"data-date="2026-11-25" data-model="gpt-4o" data-value="2.5""#,
        r#"<tr data-date="2026-11-25" class="over">"#,
        r#"data-alertname="HighErrorRate" data-pending-since="1795586460000" data-firing-from="1795586520000" data-resolved-at="""#,
        "错误率 &lt;b&gt;过高&lt;/b&gt;",
        r#"class="budget""#,
    ] {
        assert!(page.contains(needle), "{needle} not in the page:\n{page}");
    }
    for outside in ["<script", "src=", "href=", "http://", "https://", "url("] {
        assert!(
            !page.contains(outside),
            "{outside} in a self-contained page"
        );
    }
}
