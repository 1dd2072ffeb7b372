//! How fast frames parse, and that finding the last complete frame of a
//! growing file costs the same for 10 MB as for 4 GB.
//!
//! `cargo bench -p pff --bench parse`. Parses the real Lick img16 frames:
//! the full-size shared sample when present (the numbers in the README),
//! else the repository's 300-frame fixture. The lookup benches use
//! synthetic frames.

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pff::{DataProduct, Frame, Header, PffFile, Pixels, Quabo, RawFrame};

/// The complete frames of the real img16 recording, and the frame size.
fn lick_img16() -> (Vec<u8>, usize) {
    let sample = testdata::lick_samples("img16", 1)
        .pop()
        .expect("fixtures/ holds the img16 recording");
    println!(
        "parsing {} ({} frames)",
        sample.path.display(),
        sample.frames
    );
    let file = PffFile::open(&sample.path).unwrap();
    let size = file.frame_size() as usize;
    let mut bytes = std::fs::read(&sample.path).unwrap();
    bytes.truncate(bytes.len() / size * size);
    (bytes, size)
}

fn parse(c: &mut Criterion) {
    let (bytes, size) = lick_img16();
    let frames = (bytes.len() / size) as u64;
    let parse_all = |bytes: &[u8]| {
        let mut off = 0;
        while off < bytes.len() {
            let (frame, len) = Frame::parse(&bytes[off..], DataProduct::Img16).unwrap();
            black_box(frame);
            off += len;
        }
    };

    let mut g = c.benchmark_group("img16 sample, bytes");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("Frame::parse every frame", |b| b.iter(|| parse_all(&bytes)));
    g.bench_function("RawFrame::new every frame (check only)", |b| {
        b.iter(|| {
            for chunk in bytes.chunks_exact(size) {
                black_box(RawFrame::new(chunk.to_vec(), DataProduct::Img16).unwrap());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("img16 sample, frames");
    g.throughput(Throughput::Elements(frames));
    g.bench_function("Frame::parse every frame", |b| b.iter(|| parse_all(&bytes)));
    g.finish();

    // Where the time of a parse goes.
    let one = &bytes[..size];
    let raw = RawFrame::new(one.to_vec(), DataProduct::Img16).unwrap();
    let text = raw.header_text().unwrap().to_string();
    let mut g = c.benchmark_group("img16 one frame, parts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("header_len", |b| b.iter(|| pff::header_len(black_box(one))));
    g.bench_function("Header::parse", |b| {
        b.iter(|| Header::parse(black_box(&text)))
    });
    g.bench_function("Pixels::from_le_bytes", |b| {
        b.iter(|| Pixels::from_le_bytes(DataProduct::Img16, black_box(raw.image())))
    });
    g.finish();
}

/// A file of `frames` frames, sparse except frame 0 and the last two
/// frames, plus a torn tail: what a tracker sees in a large file that
/// Hashpipe is still appending to.
fn growing_file(dir: &tempfile::TempDir, frames: u64) -> std::io::Result<PathBuf> {
    let q = |n: u32| Quabo {
        pkt_num: n,
        pkt_tai: 529,
        pkt_nsec: 691_007_488,
        tv_sec: 1_721_882_092,
        tv_usec: 691_344,
    };
    let frame = |n: u32| {
        Frame {
            header: Header::new_module([q(n), q(n), q(n), q(n)]),
            pixels: Pixels::U16(vec![n as u16; 1024]),
        }
        .to_bytes()
    };
    let size = frame(0).len() as u64;
    let path = dir.path().join(format!(
        "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_{frames}.pff"
    ));
    let mut f = File::create(&path)?;
    f.set_len(frames * size)?;
    f.write_all(&frame(0))?;
    for n in frames - 2..frames {
        f.seek(SeekFrom::Start(n * size))?;
        f.write_all(&frame(n as u32))?;
    }
    f.seek(SeekFrom::Start(frames * size))?;
    f.write_all(&frame(frames as u32)[..640])?;
    Ok(path)
}

fn last_complete(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group("PffFile::last_complete");
    // 10 MB like the Lick sample, and 4 GiB.
    for (label, frames) in [("10 MB file", 4128), ("4 GiB file", (4u64 << 30) / 2540)] {
        let file = growing_file(&dir, frames)
            .and_then(|p| PffFile::open(&p).map_err(|e| std::io::Error::other(e.to_string())));
        let file = file.unwrap_or_else(|e| panic!("making the sparse {label}: {e}"));
        let (n, raw) = file.last_complete().unwrap().unwrap();
        assert_eq!(n, frames - 1);
        assert_eq!(
            raw.parse().unwrap().header.quabo(0).unwrap().pkt_num as u64,
            n
        );
        g.bench_function(label, |b| b.iter(|| file.last_complete().unwrap()));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = parse, last_complete
}
criterion_main!(benches);
