//! Draws docs/plot-view.png and docs/plot-phdist.png from the real Lick
//! frames (the full-size shared samples when present, else the
//! repository's fixtures), feeding decoded frames straight into the views
//! (no server).
//!
//! `cargo run -p daqdata-client --example snapshots_from_samples [OUT_DIR]`
//! (OUT_DIR defaults to docs/). With a server, `daqdata --init-sim
//! --plot-view --snapshot docs/plot-view.png` draws the same views from the
//! simulator.

use std::path::PathBuf;

use daqdata_client::view::{save_png, PhDist, PlotView};
use daqdata_client::Image;

/// Every `step`-th frame of the Lick recording of `dp` and `module`,
/// decoded: of the full-size shared sample when present, else the fixture.
fn frames(dp: &str, module: u32, step: usize) -> anyhow::Result<Vec<Image>> {
    let sample = testdata::lick_samples(dp, module)
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no {dp} recording of module {module}"))?;
    let name = sample.file_name();
    let file = pff::PffFile::open(&sample.path)?;
    let mut out = Vec::new();
    for (n, frame) in file.frames()?.enumerate().step_by(step) {
        out.push(Image::from_frame(
            file.data_product(),
            &frame?,
            module.into(),
            name,
            n as u32,
        ));
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("docs"), PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let movie = frames("img16", 1, 1)?;
    let ph1 = frames("ph256", 1, 1)?;
    let ph3 = frames("ph256", 3, 1)?;

    let mut view = PlotView::new();
    let mut dist = PhDist::new();
    // The files were recorded minutes apart; replay each from its own
    // start, interleaved by that time, as if all were live at once.
    // Stop where the shortest pulse-height file ends, so every module's
    // windows hold events.
    let span = |f: &[Image]| {
        let t = |i: Option<&Image>| i.and_then(Image::node_time).unwrap_or(0.0);
        t(f.last()) - t(f.first())
    };
    let end = span(&ph1).min(span(&ph3));
    let mut all: Vec<(f64, Image)> = Vec::new();
    for file in [movie, ph1, ph3] {
        let start = file.first().and_then(Image::node_time).unwrap_or(0.0);
        all.extend(
            file.into_iter()
                .map(|i| (i.node_time().unwrap_or(start) - start, i)),
        );
    }
    all.retain(|(t, _)| *t <= end);
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, image) in all {
        dist.update(&image, t);
        view.update(image);
    }
    save_png(&view.to_png(), &out.join("plot-view.png"))?;
    save_png(&dist.to_png(), &out.join("plot-phdist.png"))?;
    println!(
        "wrote {0}/plot-view.png and {0}/plot-phdist.png from {1} images",
        out.display(),
        view.frames()
    );
    Ok(())
}
