//! Making the fixtures: cutting recorded files, deriving synthetic ones.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use pff::{DataProduct, Frame, Header, ModuleId, PffFile, PffName, Pixels, Quabo, QUABO_SIDE};

/// Copies `frames` whole frames after `skip` of a recorded file into `out`;
/// returns the file written.
pub fn cut(file: &Path, skip: u64, frames: u64, out: &Path) -> anyhow::Result<PathBuf> {
    let pff = PffFile::open(file).with_context(|| format!("opening {}", file.display()))?;
    let name = name_of(file)?;
    let layout = pff.layout()?;
    if skip + frames > layout.frames {
        bail!(
            "{} holds {} complete frames; cannot cut {frames} after {skip}",
            file.display(),
            layout.frames
        );
    }
    let mut bytes = Vec::with_capacity((frames * layout.frame_size) as usize);
    for n in skip..skip + frames {
        bytes.extend_from_slice(pff.read_raw(n)?.as_bytes());
    }
    write(
        out,
        &PffName::new(name.start, name.dp, name.module, name.seqno),
        &bytes,
    )
}

/// Synthetic img8 and ph1024 fixtures derived from real img16 and ph256
/// frames, so that all four data products can be replayed.
pub fn synth(
    img16: &Path,
    ph256: &Path,
    frames: usize,
    module: ModuleId,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let movie = read_frames(img16, DataProduct::Img16, frames)?;
    let pulses = read_frames(ph256, DataProduct::Ph256, frames * 4)?;

    let mut img8 = Vec::new();
    for frame in &movie {
        let Pixels::U16(values) = &frame.pixels else {
            bail!("{}: not img16 pixels", img16.display());
        };
        // img8 counts in coarser steps: a quarter of img16, saturating.
        let pixels = values.iter().map(|v| (v / 4).min(255) as u8).collect();
        let quabos = std::array::from_fn(|i| frame.header.quabo(i).copied().unwrap_or_default());
        img8.extend(
            Frame {
                header: Header::new_module(quabos),
                pixels: Pixels::U8(pixels),
            }
            .to_bytes(),
        );
    }

    let mut ph1024 = Vec::new();
    for four in pulses.chunks_exact(4) {
        // Quabo q fills its quadrant of the module's 32x32 image.
        let mut pixels = vec![0i16; DataProduct::Ph1024.pixels()];
        let mut quabos = [Quabo::default(); 4];
        for (q, frame) in four.iter().enumerate() {
            let Pixels::I16(values) = &frame.pixels else {
                bail!("{}: not ph256 pixels", ph256.display());
            };
            for (i, v) in values.iter().enumerate() {
                let (row, col) = DataProduct::module_pixel(q as u8, i / QUABO_SIDE, i % QUABO_SIDE);
                pixels[row * DataProduct::Ph1024.shape()[1] + col] = *v;
            }
            quabos[q] = frame.header.timing_quabo().copied().unwrap_or_default();
        }
        ph1024.extend(
            Frame {
                header: Header::new_module(quabos),
                pixels: Pixels::I16(pixels),
            }
            .to_bytes(),
        );
    }

    let start = name_of(img16)?.start;
    Ok(vec![
        write(
            out,
            &PffName::new(start.clone(), DataProduct::Img8, module, 0),
            &img8,
        )?,
        write(
            out,
            &PffName::new(start, DataProduct::Ph1024, module, 0),
            &ph1024,
        )?,
    ])
}

fn read_frames(path: &Path, dp: DataProduct, n: usize) -> anyhow::Result<Vec<Frame>> {
    let file = PffFile::open_as(path, dp).with_context(|| format!("opening {}", path.display()))?;
    let have = file.layout()?.frames;
    if (n as u64) > have {
        bail!(
            "{} holds {have} complete frames, {n} needed",
            path.display()
        );
    }
    (0..n as u64)
        .map(|i| {
            file.read_frame(i)
                .with_context(|| format!("reading frame {i} of {}", path.display()))
        })
        .collect()
}

fn name_of(path: &Path) -> anyhow::Result<PffName> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    PffName::parse(&file_name).with_context(|| format!("{} is not a PFF file name", path.display()))
}

/// Writes a fixture under its Hashpipe name, with `_` for `:` in the time
/// (as the samples are stored) so the name is valid on every file system.
fn write(out: &Path, name: &PffName, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(name.to_string().replace(':', "_"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
