//! The PNG chart in emails: the alert's expression (or the SLO's error ratio and threshold) over
//! the alert's long window, drawn with `plotters` into a memory bitmap and encoded with `png`.
//!
//! Text uses Lato (SIL OFL 1.1, `assets/fonts/`), embedded in the binary and registered with
//! plotters' `ab_glyph` backend, so no system font is needed at run time.

use std::sync::Once;

use chrono::{DateTime, Utc};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::context::Series;

/// The bundled font.
static FONT: &[u8] = include_bytes!("../../assets/fonts/Lato-Regular.ttf");
static REGISTER: Once = Once::new();

/// Width of the chart in pixels.
pub const WIDTH: u32 = 720;
/// Height of the chart in pixels.
pub const HEIGHT: u32 = 300;

/// Errors drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// plotters failed.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("encoding the chart as PNG: {0}")]
    Encode(#[from] png::EncodingError),
}

fn draw_err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError::Draw(e.to_string())
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Draws up to five series, an optional horizontal threshold (red, dashed) and an optional
/// vertical marker (when the alert started), and returns the PNG bytes.
pub fn render(
    series: &[Series],
    threshold: Option<f64>,
    marker: Option<DateTime<Utc>>,
    caption: &str,
) -> Result<Vec<u8>, ChartError> {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the bundled chart font is invalid");
        }
    });
    let points = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|(_, v)| v.is_finite());
    let (mut t0, mut t1) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (t, v) in points {
        t0 = Some(t0.map_or(*t, |x| x.min(*t)));
        t1 = Some(t1.map_or(*t, |x| x.max(*t)));
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let (Some(t0), Some(mut t1)) = (t0, t1) else {
        return Err(ChartError::Draw("no finite points".into()));
    };
    if t1 <= t0 {
        t1 = t0 + chrono::Duration::minutes(1);
    }
    if let Some(th) = threshold {
        lo = lo.min(th);
        hi = hi.max(th);
    }
    lo = lo.min(0.0);
    if hi <= lo {
        hi = lo + 1.0;
    }
    hi += (hi - lo) * 0.1;

    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let span = t1 - t0;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(t0..t1, lo..hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t: &DateTime<Utc>| {
                if span > chrono::Duration::days(1) {
                    t.format("%m-%d %H:%M").to_string()
                } else {
                    t.format("%H:%M").to_string()
                }
            })
            .y_label_formatter(&|v: &f64| super::context::format_value(*v))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
        for (i, (_, pts)) in series.iter().take(COLOURS.len()).enumerate() {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().filter(|(_, v)| v.is_finite()).copied(),
                    COLOURS[i].stroke_width(2),
                ))
                .map_err(draw_err)?;
        }
        if let Some(th) = threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    [(t0, th), (t1, th)],
                    8,
                    5,
                    RED.stroke_width(2),
                ))
                .map_err(draw_err)?;
        }
        if let Some(m) = marker.filter(|m| *m >= t0 && *m <= t1) {
            chart
                .draw_series(DashedLineSeries::new(
                    [(m, lo), (m, hi)],
                    4,
                    4,
                    RGBColor(120, 120, 120).stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&buf)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_of_the_declared_size_with_text_and_lines_drawn() {
        let t0 = Utc::now() - chrono::Duration::hours(1);
        let pts: Vec<(DateTime<Utc>, f64)> = (0..60)
            .map(|i| {
                (
                    t0 + chrono::Duration::minutes(i),
                    (i as f64 / 10.0).sin().abs() / 100.0,
                )
            })
            .collect();
        let png = render(
            &[(Default::default(), pts)],
            Some(0.0144),
            Some(t0),
            "Error ratio",
        )
        .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut img = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut img).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let px = |x: usize, y: usize| &img[(y * WIDTH as usize + x) * 3..][..3];
        // The threshold line is red somewhere; the data line is the first palette colour.
        let all: Vec<&[u8]> = (0..HEIGHT as usize)
            .flat_map(|y| (0..WIDTH as usize).map(move |x| (x, y)))
            .map(|(x, y)| px(x, y))
            .collect();
        assert!(all.iter().any(|p| *p == [255, 0, 0]));
        assert!(all.iter().any(|p| *p == [31, 119, 180]));
        // The caption rows (top) contain dark text pixels: the bundled font rendered.
        let caption_dark = (0..30)
            .flat_map(|y| (0..WIDTH as usize).map(move |x| (x, y)))
            .filter(|(x, y)| px(*x, *y).iter().all(|c| *c < 100))
            .count();
        assert!(caption_dark > 20, "caption pixels: {caption_dark}");
    }

    #[test]
    fn no_points_is_an_error_not_an_empty_picture() {
        assert!(render(&[(Default::default(), vec![])], None, None, "x").is_err());
    }
}
