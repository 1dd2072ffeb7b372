//! `pff`: look inside PANOSETI PFF files without a Python environment.
//!
//! `pff info FILE...` answers "what is in this file, and is it whole?";
//! `pff show FILE --frame N` answers "what does this frame say?".

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::bail;
use clap::{Parser, Subcommand};
use serde::Serialize;

use pff::{time, DataProduct, Frame, Layout, PffFile, PffName, Pixels, Quabo};

#[derive(Parser)]
#[command(
    name = "pff",
    version,
    about = "Look inside PANOSETI PFF files: frame counts, torn tails, times, headers and pixels",
    long_about = "Look inside PANOSETI PFF files: frame counts, torn tails, times, headers and pixels.\n\n\
        The data product and module come from the file name \
        (start_TIME.dp_DP.bpp_B.module_M.seqno_S.pff); use --dp for a file that was renamed.\n\
        Files that Hashpipe is still writing are fine: only complete frames are read.",
    after_help = "Examples:\n  \
        pff info DATA_DIR/module_1/obs_Lick.start_2024-07-25T04:34:06Z.runtype_sci-data.pffd\n  \
        pff info --json start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.pff\n  \
        pff show FILE --frame 0\n  \
        pff show FILE --frame last --pixels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per file: data product, module, frame size, complete frames,
    /// torn-tail bytes, and the node time of the first and last frames.
    Info {
        /// PFF files to describe; a directory (such as a run's `.pffd`)
        /// stands for the PFF-named files in it, in name order.
        #[arg(required = true, value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
        /// Print one JSON object per file (one per line) instead of text.
        #[arg(long)]
        json: bool,
        /// Data product of files whose names do not say it
        /// (img16, img8, ph256, ph1024).
        #[arg(long, value_name = "DP")]
        dp: Option<DataProduct>,
    },
    /// One frame: its header as written, its times, and pixel min/max/mean.
    Show {
        /// The PFF file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Which frame: a 0-based index, or `last` for the last complete one.
        #[arg(long, short = 'n', default_value = "0", value_name = "N|last")]
        frame: FrameIndex,
        /// Also print every pixel, row by row.
        #[arg(long)]
        pixels: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Data product of a file whose name does not say it.
        #[arg(long, value_name = "DP")]
        dp: Option<DataProduct>,
    },
}

/// A frame asked for on the command line.
#[derive(Clone, Copy, Debug)]
enum FrameIndex {
    Number(u64),
    Last,
}

impl FromStr for FrameIndex {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "last" {
            return Ok(FrameIndex::Last);
        }
        s.parse()
            .map(FrameIndex::Number)
            .map_err(|_| format!("{s:?} is neither a frame index (0, 1, ...) nor `last`"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match cli.command {
        Command::Info { files, json, dp } => {
            // Every file is described even if one fails: a DAQ directory
            // listing often holds a stray file, and the rest still matter.
            let mut ok = true;
            for path in files.iter().flat_map(expand) {
                match path.and_then(|path| info(&path, dp)) {
                    Ok(info) => print_info(&info, json),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ok = false;
                    }
                }
            }
            ok
        }
        Command::Show {
            file,
            frame,
            pixels,
            json,
            dp,
        } => match show(&file, frame, dp) {
            Ok(shown) => {
                print_show(&shown, pixels, json);
                true
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                false
            }
        },
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A file stands for itself; a directory for the files in it whose names
/// are PFF names (so `hk.pff` and `recording_ended` are left out).
fn expand(path: &PathBuf) -> Vec<anyhow::Result<PathBuf>> {
    if !path.is_dir() {
        return vec![Ok(path.clone())];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            return vec![Err(
                anyhow::Error::new(e).context(path.display().to_string())
            )]
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| PffName::parse(n).is_ok())
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return vec![Err(anyhow::anyhow!(
            "{}: a directory with no PFF-named files (start_TIME.dp_DP....pff)",
            path.display()
        ))];
    }
    files.into_iter().map(Ok).collect()
}

/// What `info` reports for one file.
#[derive(Serialize)]
struct Info {
    file: String,
    data_product: &'static str,
    module: Option<u32>,
    frame_size: u64,
    complete_frames: u64,
    torn_tail_bytes: u64,
    first: Option<Stamp>,
    last: Option<Stamp>,
}

/// The node time of a frame's first quabo.
#[derive(Serialize)]
struct Stamp {
    frame: u64,
    /// ISO 8601 UTC with microseconds.
    utc: String,
    /// Unix seconds.
    unix: f64,
    tv_sec: i64,
    tv_usec: u32,
}

impl Stamp {
    fn of(frame: u64, q: &Quabo) -> Self {
        // Through the decimal text, so JSON shows exactly the microseconds
        // the header holds rather than a float sum's rounding.
        let text = format!("{}.{:06}", q.tv_sec, q.tv_usec);
        Stamp {
            frame,
            utc: time::iso_utc(q.tv_sec, q.tv_usec),
            unix: text.parse().unwrap_or_else(|_| q.node_time()),
            tv_sec: q.tv_sec,
            tv_usec: q.tv_usec,
        }
    }

    fn line(&self) -> String {
        format!(
            "frame {}, {} (Unix {}.{:06})",
            self.frame, self.utc, self.tv_sec, self.tv_usec
        )
    }
}

/// Names the file in an error unless the error already does.
fn in_file<T>(result: pff::Result<T>, path: &Path) -> anyhow::Result<T> {
    result.map_err(|e| {
        let shown = path.display().to_string();
        if e.to_string().contains(&shown) {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(e).context(shown)
        }
    })
}

fn open(path: &Path, dp: Option<DataProduct>) -> anyhow::Result<(PffFile, Option<u32>)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parsed = PffName::parse(name);
    let module = parsed.as_ref().ok().map(|n| n.module.get());
    let file = match (dp, parsed) {
        (Some(dp), _) => in_file(PffFile::open_as(path, dp), path)?,
        (None, Ok(name)) => in_file(PffFile::open_as(path, name.dp), path)?,
        (None, Err(e)) => {
            return Err(anyhow::Error::new(e).context(format!(
                "{}: the name does not say the data product; pass --dp img16|img8|ph256|ph1024",
                path.display()
            )))
        }
    };
    Ok((file, module))
}

fn stamp(file: &PffFile, n: u64) -> anyhow::Result<Option<Stamp>> {
    let frame = in_file(file.read_frame(n), file.path())?;
    Ok(frame.header.timing_quabo().map(|q| Stamp::of(n, q)))
}

fn info(path: &Path, dp: Option<DataProduct>) -> anyhow::Result<Info> {
    let (file, module) = open(path, dp)?;
    let Layout {
        frame_size,
        frames,
        tail_bytes,
    } = in_file(file.layout(), path)?;
    let (first, last) = match frames {
        0 => (None, None),
        n => (stamp(&file, 0)?, stamp(&file, n - 1)?),
    };
    Ok(Info {
        file: path.display().to_string(),
        data_product: file.data_product().name(),
        module,
        frame_size,
        complete_frames: frames,
        torn_tail_bytes: tail_bytes,
        first,
        last,
    })
}

fn print_info(info: &Info, json: bool) {
    if json {
        println!("{}", serde_json::json!(info));
        return;
    }
    let module = info
        .module
        .map_or("module unknown".to_string(), |m| format!("module {m}"));
    let tail = match info.torn_tail_bytes {
        0 => ", no torn tail".to_string(),
        n => format!(" + {n}-byte torn tail"),
    };
    println!("{}", info.file);
    println!("  {}, {module}", describe(info.data_product));
    println!(
        "  {} complete frames of {} bytes{tail}",
        info.complete_frames, info.frame_size
    );
    let none = "none (no complete frame yet)".to_string();
    let first = info.first.as_ref().map_or(none.clone(), Stamp::line);
    let last = info.last.as_ref().map_or(none, Stamp::line);
    println!("  first: {first}");
    println!("  last:  {last}");
}

/// `img16 (movie, 32x32 u16)`: the product and what its name means.
fn describe(name: &str) -> String {
    let Ok(dp) = name.parse::<DataProduct>() else {
        return name.to_string();
    };
    let [rows, cols] = dp.shape();
    let kind = match dp.kind() {
        pff::ImageKind::Movie => "movie",
        pff::ImageKind::PulseHeight => "pulse height",
    };
    let sign = if dp.is_signed() { 'i' } else { 'u' };
    let bits = dp.bytes_per_pixel() * 8;
    format!("{name} ({kind}, {rows}x{cols} {sign}{bits})")
}

/// What `show` reports for one frame.
#[derive(Serialize)]
struct Shown {
    file: String,
    data_product: &'static str,
    module: Option<u32>,
    frame: u64,
    complete_frames: u64,
    offset: u64,
    header_text: String,
    header: serde_json::Value,
    time: Option<Stamp>,
    /// White Rabbit Unix time `SECONDS.NANOSECONDS`, or why it is unknown.
    white_rabbit: String,
    shape: [usize; 2],
    pixels: PixelStats,
    #[serde(skip)]
    frame_data: Frame,
}

#[derive(Serialize)]
struct PixelStats {
    count: usize,
    min: f64,
    max: f64,
    mean: f64,
}

impl PixelStats {
    fn of(pixels: &Pixels) -> Self {
        let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for v in pixels.values() {
            min = min.min(v);
            max = max.max(v);
            sum += v;
        }
        let count = pixels.len();
        if count == 0 {
            (min, max) = (0.0, 0.0);
        }
        PixelStats {
            count,
            min,
            max,
            mean: sum / count.max(1) as f64,
        }
    }
}

fn show(path: &Path, which: FrameIndex, dp: Option<DataProduct>) -> anyhow::Result<Shown> {
    let (file, module) = open(path, dp)?;
    let layout = in_file(file.layout(), path)?;
    let n = match (which, layout.frames) {
        (_, 0) => bail!(
            "{}: no complete frame yet ({} bytes of a first frame)",
            path.display(),
            layout.tail_bytes
        ),
        (FrameIndex::Last, frames) => frames - 1,
        (FrameIndex::Number(n), frames) if n >= frames => bail!(
            "{}: there is no frame {n}: the file has {frames} complete frames (0 to {})",
            path.display(),
            frames - 1
        ),
        (FrameIndex::Number(n), _) => n,
    };
    let frame = in_file(file.read_frame(n), path)?;
    let quabo = frame.header.timing_quabo();
    let white_rabbit = match quabo.map(Quabo::wr_time) {
        Some(Ok((secs, nsec))) => format!("{secs}.{nsec:09}"),
        Some(Err(e)) => format!("unknown: {e}"),
        None => "unknown: no quabo stamps".to_string(),
    };
    Ok(Shown {
        file: path.display().to_string(),
        data_product: file.data_product().name(),
        module,
        frame: n,
        complete_frames: layout.frames,
        offset: n * layout.frame_size,
        header_text: frame.header.text().to_string(),
        header: frame.header.to_json(),
        time: quabo.map(|q| Stamp::of(n, q)),
        white_rabbit,
        shape: file.data_product().shape(),
        pixels: PixelStats::of(&frame.pixels),
        frame_data: frame,
    })
}

fn print_show(shown: &Shown, with_pixels: bool, json: bool) {
    if json {
        let mut value = serde_json::json!(shown);
        if with_pixels {
            value["pixel_values"] = serde_json::json!(shown
                .frame_data
                .pixels
                .values()
                .map(|v| v as i64)
                .collect::<Vec<_>>());
        }
        println!("{value}");
        return;
    }
    let module = shown
        .module
        .map_or("module unknown".to_string(), |m| format!("module {m}"));
    println!(
        "{} frame {} of {} ({}, {module}, byte offset {})",
        shown.file,
        shown.frame,
        shown.complete_frames,
        describe(shown.data_product),
        shown.offset
    );
    println!("{}", shown.header_text);
    if let Some(t) = &shown.time {
        println!(
            "node time:    {} (Unix {}.{:06})",
            t.utc, t.tv_sec, t.tv_usec
        );
    }
    println!("White Rabbit: {}", shown.white_rabbit);
    let p = &shown.pixels;
    let [rows, cols] = shown.shape;
    println!(
        "pixels: {} ({rows}x{cols}): min {}, max {}, mean {:.3}",
        p.count, p.min, p.max, p.mean
    );
    if with_pixels {
        let values: Vec<f64> = shown.frame_data.pixels.values().collect();
        for row in values.chunks(cols.max(1)) {
            let line: Vec<String> = row.iter().map(|v| format!("{v:6}")).collect();
            println!("{}", line.join(""));
        }
    }
}
