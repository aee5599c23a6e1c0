//! Line figures (SVG always, PNG with an embedded font) for experiment results.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::HarnessError;

/// One curve, with an optional shaded band (lower, upper) at the same x values.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Lower and upper edge of the band at each point (e.g. min and max over seeds).
    pub band: Option<Vec<(f64, f64)>>,
    /// Draw dashed (e.g. a reference curve).
    pub dashed: bool,
    /// Palette index; by default the series' position.
    pub color: Option<usize>,
}

/// A line chart.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The curves.
    pub series: Vec<Series>,
    /// Legend in the upper left instead of the upper right.
    pub legend_left: bool,
}

impl LinePlot {
    /// ROC curves (false-positive rate, true-positive rate) on log-log axes, where the low
    /// false-positive rates that membership attacks are judged by are visible, with the chance
    /// diagonal dashed; points with a zero rate are left out.
    pub fn log_log_roc(title: &str, curves: Vec<(String, Vec<(f64, f64)>)>) -> Self {
        let mut series: Vec<Series> = curves
            .into_iter()
            .map(|(label, curve)| Series {
                label,
                points: curve
                    .into_iter()
                    .filter(|&(f, t)| f > 0.0 && t > 0.0)
                    .collect(),
                ..Series::default()
            })
            .collect();
        series.push(Series {
            label: "chance".into(),
            points: vec![(1e-4, 1e-4), (1.0, 1.0)],
            dashed: true,
            ..Series::default()
        });
        LinePlot {
            title: title.into(),
            x_label: "false-positive rate".into(),
            y_label: "true-positive rate".into(),
            log_x: true,
            log_y: true,
            series,
            legend_left: false,
        }
    }
}

const SIZE: (u32, u32) = (960, 640);

/// Matplotlib's "tab10" colors: distinct on white, and familiar to readers of papers.
const COLORS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Tick label: plain for moderate values, scientific for tiny or huge ones.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The PNG backend draws text with this font; the SVG backend writes text elements.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

impl LinePlot {
    /// Writes `<stem>.svg` and `<stem>.png` into `dir`.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(), HarnessError> {
        register_font();
        let svg = dir.join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}.png"));
        // Drawing fails on the file system (a full disk): the run can go on once it is fixed.
        let err =
            |p: &Path, e: String| HarnessError::write_failed("draw", p, &std::io::Error::other(e));
        crate::output::injected_fault(&svg).map_err(|e| err(&svg, e.to_string()))?;
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            self.draw(&root).map_err(|e| err(&svg, e))?;
            root.present().map_err(|e| err(&svg, e.to_string()))?;
        }
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            self.draw(&root).map_err(|e| err(&png, e))?;
            root.present().map_err(|e| err(&png, e.to_string()))?;
        }
        Ok(())
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let ok_y = |y: f64| y.is_finite() && (!self.log_y || y > 0.0);
        let ok_x = |x: f64| x.is_finite() && (!self.log_x || x > 0.0);
        for s in &self.series {
            let band = s.band.iter().flatten().flat_map(|&(lo, hi)| [lo, hi]);
            for y in s
                .points
                .iter()
                .map(|p| p.1)
                .chain(band)
                .filter(|&y| ok_y(y))
            {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            for x in s.points.iter().map(|p| p.0).filter(|&x| ok_x(x)) {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
        }
        if x0 > x1 {
            (x0, x1) = (1.0, 2.0);
        }
        if y0 > y1 {
            (y0, y1) = (1.0, 2.0);
        }
        if x0 == x1 {
            x1 = x0 + 1.0;
        }
        if self.log_y {
            (y0, y1) = (y0 / 1.5, y1 * 1.5);
        } else {
            let pad = 0.05 * (y1 - y0).max(1e-12);
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        ((x0, x1), (y0, y1))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .label_style(("sans-serif", 15))
                    .x_label_formatter(&tick)
                    .y_label_formatter(&tick)
                    .axis_desc_style(("sans-serif", 18))
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (i, s) in self.series.iter().enumerate() {
                    let (r, g, b) = COLORS[s.color.unwrap_or(i) % COLORS.len()];
                    let color = RGBColor(r, g, b).to_rgba();
                    let keep = |&(x, y): &(f64, f64)| {
                        x.is_finite()
                            && y.is_finite()
                            && (!self.log_y || y > 0.0)
                            && (!self.log_x || x > 0.0)
                    };
                    if let Some(band) = &s.band {
                        let mut poly: Vec<(f64, f64)> = s
                            .points
                            .iter()
                            .zip(band)
                            .map(|(p, b)| (p.0, b.1))
                            .filter(keep)
                            .collect();
                        let lower: Vec<(f64, f64)> = s
                            .points
                            .iter()
                            .zip(band)
                            .map(|(p, b)| (p.0, b.0))
                            .filter(keep)
                            .collect();
                        poly.extend(lower.into_iter().rev());
                        chart
                            .draw_series(std::iter::once(Polygon::new(
                                poly,
                                color.mix(0.18).filled(),
                            )))
                            .map_err(|e| e.to_string())?;
                    }
                    let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(keep).collect();
                    let style = ShapeStyle::from(color).stroke_width(2);
                    let series = if s.dashed {
                        chart.draw_series(DashedLineSeries::new(pts, 8, 5, style))
                    } else {
                        chart.draw_series(LineSeries::new(pts, style))
                    };
                    series
                        .map_err(|e| e.to_string())?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                        });
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 15))
                    .position(if self.legend_left {
                        SeriesLabelPosition::UpperLeft
                    } else {
                        SeriesLabelPosition::UpperRight
                    })
                    .draw()
                    .map_err(|e| e.to_string())?;
            }};
        }
        match (self.log_x, self.log_y) {
            (false, false) => body!(
                builder
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| e.to_string())?
            ),
            (false, true) => body!(
                builder
                    .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                    .map_err(|e| e.to_string())?
            ),
            (true, false) => body!(
                builder
                    .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                    .map_err(|e| e.to_string())?
            ),
            (true, true) => body!(
                builder
                    .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                    .map_err(|e| e.to_string())?
            ),
        }
        Ok(())
    }
}
