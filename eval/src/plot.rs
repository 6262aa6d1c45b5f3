//! Bar charts of results as SVG (plotters' SVG backend writes text as SVG
//! text, so no font files are needed on the machine that draws them).

use crate::results::{size_label, Row};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One bar of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Bars with the same engine share a colour across panels.
    pub engine: String,
}

/// One small chart in the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// A fixed colour per engine so charts are comparable at a glance.
fn engine_colour(engine: &str) -> RGBColor {
    match engine {
        "libdb" => RGBColor(214, 39, 40),
        "sqlite" => RGBColor(31, 119, 180),
        "sqlite-normal" => RGBColor(120, 170, 220),
        "lmdb" => RGBColor(44, 160, 44),
        "redb" => RGBColor(255, 127, 14),
        // eval --fs: libfs beside Linux's file systems.
        "libfs" => RGBColor(214, 39, 40),
        "ext4" | "ext4-dax" => RGBColor(31, 119, 180),
        _ => RGBColor(127, 127, 127),
    }
}

fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws `panels` in a grid of `columns` columns into an SVG file.
pub fn write_bar_chart_svg(
    path: &Path,
    title: &str,
    y_label: &str,
    panels: &[Panel],
    columns: usize,
) -> Result<(), String> {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let (panel_w, panel_h) = (440u32, 300u32);
    let size = (panel_w * columns as u32, 40 + panel_h * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, columns));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel, y_label).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    y_label: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = panel.bars.len().max(1);
    let max = panel.bars.iter().map(|b| b.value).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let labels: Vec<String> = panel.bars.iter().map(|b| b.label.clone()).collect();
    let label_of = move |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d((0..n.saturating_sub(1).max(1)).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label_of)
        .x_label_style(TextStyle::from(("sans-serif", if n > 5 { 8 } else { 10 }).into_font()))
        .y_desc(y_label)
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, bar)| {
        let mut rect = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), bar.value)],
            engine_colour(&bar.engine).filled(),
        );
        rect.set_margin(0, 0, 4, 4);
        rect
    }))?;
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, bar)| {
        Text::new(
            short_number(bar.value),
            (SegmentValue::CenterOf(i), bar.value),
            TextStyle::from(("sans-serif", 9).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    Ok(())
}

/// One line of a line chart: its name and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// A colour per line (cycled).
fn series_colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(120, 170, 220),
        RGBColor(23, 60, 110),
        RGBColor(214, 39, 40),
        RGBColor(255, 152, 150),
        RGBColor(120, 20, 20),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
    ];
    C[i % C.len()]
}

/// Line charts side by side, one per `(y label, series, threshold)`: x on a
/// log scale (`x_label`), each series a line with its points marked and
/// named in a legend; `threshold` draws a dashed horizontal line labelled
/// "target".
pub fn write_line_charts_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    charts: &[(&str, Vec<Series>, Option<f64>)],
) -> Result<(), String> {
    let n = charts.len().max(1);
    let root = SVGBackend::new(path, (560 * n as u32, 460)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    for ((y_label, series, threshold), area) in charts.iter().zip(root.split_evenly((1, n)).iter()) {
        draw_lines(area, x_label, y_label, series, *threshold).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    threshold: Option<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (x_lo, x_hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_lo, x_hi) = if x_lo <= x_hi && x_lo > 0.0 { (x_lo / 1.5, x_hi * 1.5) } else { (0.5, 2.0) };
    let y_max = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(threshold.unwrap_or(0.0), f64::max);
    let top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    if let Some(t) = threshold {
        let grey = RGBColor(90, 90, 90);
        let mut x = x_lo;
        while x < x_hi {
            let next = (x * 1.15).min(x_hi);
            chart.draw_series(std::iter::once(PathElement::new(vec![(x, t), ((x * 1.07).min(x_hi), t)], grey)))?;
            x = next;
        }
        chart.draw_series(std::iter::once(Text::new(
            format!("target {} ms", short_number(t)),
            (x_lo * 1.05, t),
            TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom)),
        )))?;
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = series_colour(i);
        chart
            .draw_series(std::iter::once(PathElement::new(pts.clone(), colour.stroke_width(2))))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(30)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}

/// Panels of one metric, one panel per (workload, value size) in first-seen
/// order, one bar per engine (and durability, when a panel has several).
pub fn panels_by_workload(rows: &[Row], metric: fn(&Row) -> Option<f64>) -> Vec<Panel> {
    panels_by(rows, metric, false)
}

/// Like [`panels_by_workload`], with one panel per (workload, value size,
/// durability): for comparing engines at equal durability.
pub fn panels_by_durability(rows: &[Row], metric: fn(&Row) -> Option<f64>) -> Vec<Panel> {
    panels_by(rows, metric, true)
}

fn panels_by(rows: &[Row], metric: fn(&Row) -> Option<f64>, split: bool) -> Vec<Panel> {
    let mut panels: Vec<(String, u64, String, Panel)> = Vec::new();
    for row in rows {
        let Some(value) = metric(row) else { continue };
        let durability = if split { row.durability.clone() } else { String::new() };
        let pos =
            panels.iter().position(|(w, v, d, _)| *w == row.workload && *v == row.value_bytes && *d == durability);
        let idx = match pos {
            Some(i) => i,
            None => {
                let mut title = format!("{}, {}", row.workload, size_label(row.value_bytes));
                if split {
                    title.push_str(&format!(", {durability}"));
                }
                panels.push((row.workload.clone(), row.value_bytes, durability, Panel { title, bars: Vec::new() }));
                panels.len() - 1
            }
        };
        panels[idx].3.bars.push(Bar {
            label: format!("{} {}", row.engine, row.durability),
            value,
            engine: row.engine.clone(),
        });
    }
    // Where every engine appears once in a panel, the engine names the bar.
    for (_, _, _, panel) in &mut panels {
        let engines: Vec<&str> = panel.bars.iter().map(|b| b.engine.as_str()).collect();
        let unique = engines.iter().enumerate().all(|(i, e)| !engines[..i].contains(e));
        if unique {
            for bar in &mut panel.bars {
                bar.label = bar.engine.clone();
            }
        }
    }
    panels.into_iter().map(|(_, _, _, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(engine: &str, workload: &str, durability: &str, ops: f64) -> Row {
        Row {
            system: "host-linux".into(),
            engine: engine.into(),
            medium: "host-fs".into(),
            workload: workload.into(),
            value_bytes: 100,
            durability: durability.into(),
            ops: 10,
            ops_per_sec: ops,
            flushes_per_op: if workload == "commit" { Some(1.0) } else { None },
            ..Row::default()
        }
    }

    #[test]
    fn panels_group_rows_and_skip_missing_metrics() {
        let rows = vec![
            row("sqlite", "commit", "sync", 100.0),
            row("libdb", "commit", "sync", 300.0),
            row("libdb", "commit", "async", 900.0),
            row("lmdb", "readrandom", "sync", 1e6),
        ];
        let panels = panels_by_workload(&rows, |r| Some(r.ops_per_sec));
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[0].bars.len(), 3);
        assert_eq!(panels[0].bars[2].label, "libdb async");
        assert_eq!(panels[1].bars[0].label, "lmdb");
        let flush = panels_by_workload(&rows, |r| r.flushes_per_op);
        assert_eq!(flush.len(), 1);
        let split = panels_by_durability(&rows, |r| Some(r.ops_per_sec));
        assert_eq!(split.len(), 3);
        assert_eq!(split[1].title, "commit, 100 B, async");
        assert_eq!(split[1].bars[0].label, "libdb");
    }

    #[test]
    fn writes_an_svg_with_titles_and_bars() {
        let rows = vec![row("sqlite", "commit", "sync", 1234.0), row("libdb", "commit", "sync", 5678.0)];
        let dir = std::env::temp_dir().join(format!("eval-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.svg");
        write_bar_chart_svg(&path, "ops per second", "ops/s", &panels_by_workload(&rows, |r| Some(r.ops_per_sec)), 2)
            .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("ops per second") && svg.contains("commit, 100 B"));
        assert!(svg.contains("5.7k") && svg.contains("libdb"));
    }
}
