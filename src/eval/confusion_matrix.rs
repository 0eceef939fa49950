//! `eval`'s confusion matrix as a PNG: counts of true against predicted classes.
use crate::chart::{draw_error, register_font, write_png, FONT};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// A 10x10 confusion matrix (rows: true class, columns: predicted), counts in each cell.
pub fn draw(path: &Path, title: &str, counts: &[[i64; 10]; 10], classes: &[String]) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    register_font();
    write_png(path, (1100, 1000), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 28))
            .margin(20)
            .x_label_area_size(70)
            .y_label_area_size(120)
            .build_cartesian_2d((0i32..9).into_segmented(), (0i32..9).into_segmented())
            .map_err(draw_error)?;
        let name = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let index = if flip { 9 - *i } else { *i };
                classes.get(index as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .x_label_formatter(&|x| name(x, false))
            .y_label_formatter(&|y| name(y, true))
            .draw()
            .map_err(draw_error)?;
        let row_max = counts.iter().map(|row| row.iter().sum::<i64>()).max().unwrap_or(1).max(1) as f64;
        for (truth, row) in counts.iter().enumerate() {
            for (predicted, &count) in row.iter().enumerate() {
                let (x, y) = (predicted as i32, 9 - truth as i32);
                let shade = (count as f64 / row_max).clamp(0.0, 1.0);
                let fill = RGBColor((255.0 * (1.0 - 0.8 * shade)) as u8, (255.0 * (1.0 - 0.55 * shade)) as u8, 255);
                let cell = [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ];
                chart.draw_series(std::iter::once(Rectangle::new(cell, fill.filled()))).map_err(draw_error)?;
                let text_color = if shade > 0.6 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 18).into_font())
                    .color(&text_color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let centre = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
                chart.draw_series(std::iter::once(Text::new(count.to_string(), centre, style))).map_err(draw_error)?;
            }
        }
        Ok(())
    })
}
