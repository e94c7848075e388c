//! `weir dashboards export`: Grafana dashboards for what a pipeline
//! derives, in the form Grafana's "Export for sharing externally" writes
//! (Dashboards → Import takes the files as they are), or with a fixed data
//! source uid for file provisioning (`--datasource NAME`).
//!
//! Three dashboards: the plan's system overview (requests, latency
//! quantiles, errors, tools, tokens, LLM cost against the daily budget),
//! its business figures (workflow completion, active sessions, SSE streams,
//! memory operations), and weir's own health from its self-metrics. The
//! plan's queries are corrected on the way: quantiles are taken over
//! `sum by (le) (rate(x_bucket[…]))`, never a bare histogram, and ratios
//! divide sums of rates.
//!
//! [`derived`] finds the families by what their rules match and read, so
//! the panels follow a pipeline's own metric and label names;
//! [`panels`] says which panels each dashboard has and their queries.
//!
//! Deliberately not done: a panel whose metrics the pipeline does not
//! derive is left out (and said so on standard error), never drawn empty
//! against a name that is not served; no Grafana API is called (the files
//! are imported or provisioned by the user); no Loki log panels; no
//! alert-rule panels (the rules are Prometheus' or weir's, not Grafana's).

pub mod derived;
pub mod panels;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Pipeline;
use derived::Derived;

/// The data source input of a shared dashboard.
pub const DS_INPUT: &str = "DS_PROMETHEUS";

/// How the dashboards are written.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A fixed data source uid (provisioning) instead of an import input.
    pub datasource: Option<String>,
}

/// A panel before layout.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub description: String,
    /// `timeseries`, `stat`, `bargauge` or `gauge`.
    pub kind: &'static str,
    pub unit: &'static str,
    pub w: u32,
    pub h: u32,
    /// Expression and legend of each query.
    pub targets: Vec<(String, String)>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Where the colour turns red (a budget, a ratio's floor…).
    pub red_from: Option<f64>,
    /// A ratio that should stay high: red below `red_from`, not above.
    pub red_below: bool,
    /// A relative time of the panel's own (`now/d`: today so far).
    pub time_from: Option<&'static str>,
}

impl Panel {
    pub fn new(kind: &'static str, title: &str, unit: &'static str) -> Panel {
        let (w, h) = match kind {
            "stat" | "gauge" => (6, 5),
            _ => (12, 8),
        };
        Panel {
            title: title.to_string(),
            description: String::new(),
            kind,
            unit,
            w,
            h,
            targets: Vec::new(),
            min: None,
            max: None,
            red_from: None,
            red_below: false,
            time_from: None,
        }
    }

    pub fn q(mut self, expr: impl Into<String>, legend: impl Into<String>) -> Panel {
        self.targets.push((expr.into(), legend.into()));
        self
    }

    pub fn about(mut self, text: impl Into<String>) -> Panel {
        self.description = text.into();
        self
    }

    pub fn range(mut self, min: f64, max: f64) -> Panel {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    pub fn size(mut self, w: u32, h: u32) -> Panel {
        self.w = w;
        self.h = h;
        self
    }
}

/// A dashboard before rendering.
#[derive(Debug, Clone)]
pub struct Board {
    /// File name without `.json`.
    pub file: &'static str,
    /// Short kind for the uid (`overview`, `business`, `pipeline`).
    pub kind: &'static str,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The dashboard's time zone (`utc`, or the cost block's zone, so
    /// that "today" is the day costs are booked to).
    pub timezone: String,
    pub panels: Vec<Panel>,
}

/// What an export writes, and what it says about it.
#[derive(Debug, Default)]
pub struct Export {
    /// File names and contents.
    pub files: Vec<(PathBuf, String)>,
    /// Lines for standard error: what was left out and why.
    pub notes: Vec<String>,
}

impl Export {
    /// Writes every file under `dir` (created if missing); the paths written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut out = Vec::new();
        for (name, text) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            out.push(path);
        }
        Ok(out)
    }
}

/// The pipeline's name: its file's stem (`feynman` for the embedded one).
pub fn pipeline_name(p: &Pipeline) -> String {
    let origin = p.origin.trim_start_matches('<').trim_end_matches('>');
    let file = origin.rsplit(['/', ' ']).next().unwrap_or(origin);
    let stem = file
        .strip_suffix(".yaml")
        .or_else(|| file.strip_suffix(".yml"))
        .unwrap_or(file);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if clean.trim_matches('-').is_empty() {
        "pipeline".into()
    } else {
        clean
    }
}

/// A stable uid of at most 40 characters (Grafana's limit): `weir-NAME-KIND`,
/// with a long name cut and a hash of it added so two names stay apart.
pub fn uid(name: &str, kind: &str) -> String {
    let full = format!("weir-{name}-{kind}");
    if full.len() <= 40 {
        return full;
    }
    // FNV-1a: the same name gives the same uid on every machine.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let room = 40 - "weir--".len() - kind.len() - 9;
    let cut: String = name.chars().take(room).collect();
    format!("weir-{cut}-{h:08x}-{kind}")
}

/// The dashboards for `p`, or what the user must do first.
pub fn export(p: &Pipeline, opts: &Options) -> Result<Export, String> {
    let Some(d) = Derived::of(p) else {
        return Err(format!(
            "nothing to chart: the pipeline has no metrics sink ({}); add a sink of `type: metrics` with rules (see pipelines/feynman.yaml), or give the pipeline that has one with --pipeline",
            p.origin
        ));
    };
    let name = pipeline_name(p);
    let mut notes = Vec::new();
    let boards = [
        panels::overview(&d, &mut notes),
        panels::business(&d, &mut notes),
        panels::pipeline(p, &d, &mut notes),
    ];
    let mut files = Vec::new();
    for mut b in boards {
        b.tags.insert(0, "weir".into());
        b.tags.push(name.clone());
        b.title = format!("{name} - {}", b.title);
        let model = render(&b, &name, opts);
        let mut text = serde_json::to_string_pretty(&model).expect("JSON serialises");
        text.push('\n');
        files.push((PathBuf::from(format!("{}.json", b.file)), text));
    }
    Ok(Export { files, notes })
}

/// The data source every panel and target names.
fn datasource(opts: &Options) -> Value {
    let uid = match &opts.datasource {
        Some(n) => n.clone(),
        None => format!("${{{DS_INPUT}}}"),
    };
    json!({"type": "prometheus", "uid": uid})
}

/// Places panels left to right, a new row when one does not fit in 24
/// columns or the height changes (stats above charts); a row is as high as
/// its highest panel. A row left short is widened to the full 24 columns
/// when its panels can share them evenly.
fn layout(panels: &mut [Panel]) -> Vec<(u32, u32)> {
    // Rows as index ranges.
    let mut rows: Vec<(usize, usize)> = Vec::new();
    let (mut start, mut x) = (0, 0);
    for (i, p) in panels.iter().enumerate() {
        if i > start && (x + p.w > 24 || p.h != panels[start].h) {
            rows.push((start, i));
            start = i;
            x = 0;
        }
        x += p.w;
    }
    if start < panels.len() {
        rows.push((start, panels.len()));
    }
    let mut out = Vec::new();
    let mut y = 0;
    for (a, b) in rows {
        let row = &mut panels[a..b];
        let used: u32 = row.iter().map(|p| p.w).sum();
        let n = row.len() as u32;
        if used < 24 && 24 % n == 0 && row.iter().all(|p| p.w == row[0].w) {
            for p in row.iter_mut() {
                p.w = 24 / n;
            }
        }
        let mut x = 0;
        for p in row.iter() {
            out.push((x, y));
            x += p.w;
        }
        y += row.iter().map(|p| p.h).max().unwrap_or(0);
    }
    out
}

fn thresholds(p: &Panel) -> Value {
    match (p.red_from, p.red_below) {
        (Some(v), false) => json!({"mode": "absolute", "steps": [
            {"color": "green", "value": null},
            {"color": "red", "value": v},
        ]}),
        (Some(v), true) => json!({"mode": "absolute", "steps": [
            {"color": "red", "value": null},
            {"color": "green", "value": v},
        ]}),
        (None, _) => json!({"mode": "absolute", "steps": [
            {"color": "green", "value": null},
        ]}),
    }
}

fn render_panel(p: &Panel, id: usize, (x, y): (u32, u32), ds: &Value) -> Value {
    let instant = matches!(p.kind, "bargauge" | "gauge");
    let targets: Vec<Value> = p
        .targets
        .iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({
                "datasource": ds,
                "editorMode": "code",
                "expr": expr,
                "instant": instant,
                "legendFormat": legend,
                "range": !instant,
                "refId": ref_id(i),
            })
        })
        .collect();
    let mut defaults = json!({
        "unit": p.unit,
        "thresholds": thresholds(p),
        "color": {"mode": if p.kind == "timeseries" { "palette-classic" } else { "thresholds" }},
    });
    if let Some(min) = p.min {
        defaults["min"] = json!(min);
    }
    if let Some(max) = p.max {
        defaults["max"] = json!(max);
    }
    if p.kind == "timeseries" {
        defaults["custom"] = json!({
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": false,
        });
    }
    let reduce = json!({"calcs": ["lastNotNull"], "fields": "", "values": false});
    let options = match p.kind {
        "timeseries" => json!({
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }),
        "stat" => json!({
            "reduceOptions": reduce,
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }),
        "gauge" => json!({
            "reduceOptions": reduce,
            "orientation": "auto",
            "showThresholdLabels": false,
            "showThresholdMarkers": true,
        }),
        _ => json!({
            "reduceOptions": reduce,
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": true,
            "valueMode": "color",
        }),
    };
    let mut panel = json!({
        "id": id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "datasource": ds,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    });
    if let Some(t) = p.time_from {
        panel["timeFrom"] = json!(t);
    }
    panel
}

/// `A`, `B`, … `Z`, `AA`, …
fn ref_id(i: usize) -> String {
    let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
    if i < 26 {
        letter(i).to_string()
    } else {
        format!("{}{}", letter(i / 26 - 1), letter(i))
    }
}

/// The Grafana panel plugins' names, for `__requires`.
fn panel_plugin(kind: &str) -> &'static str {
    match kind {
        "timeseries" => "Time series",
        "stat" => "Stat",
        "gauge" => "Gauge",
        _ => "Bar gauge",
    }
}

/// One dashboard as Grafana imports it.
fn render(b: &Board, name: &str, opts: &Options) -> Value {
    let ds = datasource(opts);
    let mut laid = b.panels.clone();
    let places = layout(&mut laid);
    let panels: Vec<Value> = laid
        .iter()
        .zip(places)
        .enumerate()
        .map(|(i, (p, at))| render_panel(p, i + 1, at, &ds))
        .collect();
    let current = match &opts.datasource {
        Some(n) => json!({"selected": false, "text": n, "value": n}),
        None => json!({}),
    };
    let mut model = serde_json::Map::new();
    if opts.datasource.is_none() {
        let mut kinds: Vec<&str> = b.panels.iter().map(|p| p.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut requires = vec![
            json!({"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"}),
            json!({"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}),
        ];
        requires.extend(
            kinds
                .iter()
                .map(|k| json!({"type": "panel", "id": k, "name": panel_plugin(k), "version": ""})),
        );
        model.insert(
            "__inputs".into(),
            json!([{
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "Prometheus, or weir's own query API (http://127.0.0.1:9464 when alerting is configured)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }]),
        );
        model.insert("__requires".into(), Value::Array(requires));
    }
    let body = json!({
        "annotations": {"list": []},
        "description": b.description,
        "editable": true,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": null,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": b.tags,
        "templating": {"list": [{
            "current": current,
            "hide": 0,
            "includeAll": false,
            "label": "Data source",
            "multi": false,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": false,
            "type": "datasource",
        }]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": b.timezone,
        "title": b.title,
        "uid": uid(name, b.kind),
        "version": 1,
        "weekStart": "",
    });
    if let Value::Object(m) = body {
        model.extend(m);
    }
    Value::Object(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_short_and_stable() {
        assert_eq!(uid("feynman", "overview"), "weir-feynman-overview");
        let long = "a-pipeline-with-a-very-long-name-indeed-yes";
        let u = uid(long, "business");
        assert!(u.len() <= 40, "{u}");
        assert_eq!(u, uid(long, "business"));
        assert_ne!(u, uid(&format!("{long}2"), "business"));
    }

    #[test]
    fn layout_never_overlaps() {
        let mut panels: Vec<Panel> = [6, 6, 6, 6, 6, 6]
            .iter()
            .map(|&w| Panel::new("stat", "x", "short").size(w, 4))
            .chain((0..3).map(|_| Panel::new("timeseries", "y", "short")))
            .collect();
        let at = layout(&mut panels);
        assert_eq!(at[3], (18, 0));
        // The short row of stats is widened, the charts start below it.
        assert_eq!((at[4], panels[4].w), ((0, 4), 12));
        assert_eq!(at[5], (12, 4));
        assert_eq!(at[6], (0, 8));
        assert_eq!(at[7], (12, 8));
        assert_eq!((at[8], panels[8].w), ((0, 16), 24));
        assert_eq!(ref_id(0), "A");
        assert_eq!(ref_id(27), "AB");
    }
}
