//! `pff info` and `pff show` on the real samples say what SOURCES.md says,
//! and fail clearly, naming the file, where there is nothing to show.

use std::path::PathBuf;
use std::process::{Command, Output};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pff-samples");
const LICK_IMG16: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.debug_TRUNCATED.pff";
const LICK_PH256_M1: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_1.seqno_0.debug_TRUNCATED.pff";
const LICK_PH256_M3: &str = "lick-2024-07-25/start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_3.seqno_0.debug_TRUNCATED.pff";
const PYPFF_PH256: &str =
    "pypff-2025-08-02/start_2025-08-02T05_31_36Z.dp_ph256.bpp_2.module_254.seqno_0.pff";

fn samples() -> Option<PathBuf> {
    let dir = PathBuf::from(SAMPLES);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

fn pff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pff"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn info_states_frames_and_torn_tails_of_the_samples() {
    let Some(dir) = samples() else {
        return;
    };
    let files = [LICK_IMG16, LICK_PH256_M1, LICK_PH256_M3, PYPFF_PH256]
        .map(|rel| dir.join(rel).to_str().unwrap().to_string());
    let out = pff(&["info", &files[0], &files[1], &files[2], &files[3]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // One block per file, in the order given.
    let blocks: Vec<&str> = text.split("\n/").collect();
    assert_eq!(blocks.len(), 4, "{text}");
    let expect = [
        (
            "img16 (movie, 32x32 u16), module 1",
            "4128 complete frames of 2540 bytes + 640-byte torn tail",
        ),
        (
            "ph256 (pulse height, 16x16 i16), module 1",
            "16487 complete frames of 636 bytes + 28-byte torn tail",
        ),
        (
            "ph256 (pulse height, 16x16 i16), module 3",
            "16487 complete frames of 636 bytes + 28-byte torn tail",
        ),
        (
            "ph256 (pulse height, 16x16 i16), module 254",
            "88 complete frames of 636 bytes, no torn tail",
        ),
    ];
    for (block, (what, frames)) in blocks.iter().zip(expect) {
        assert!(block.contains(what), "{block}");
        assert!(block.contains(frames), "{block}");
    }
    // First and last node times of the img16 file, to the microsecond.
    assert!(
        blocks[0].contains("first: frame 0, 2024-07-25T04:34:52.691344Z (Unix 1721882092.691344)")
    );
    assert!(blocks[0]
        .contains("last:  frame 4127, 2024-07-25T04:34:56.818321Z (Unix 1721882096.818321)"));
}

#[test]
fn info_json_is_one_object_per_file_with_the_same_facts() {
    let Some(dir) = samples() else {
        return;
    };
    let img16 = dir.join(LICK_IMG16);
    let pypff = dir.join(PYPFF_PH256);
    let out = pff(&[
        "info",
        "--json",
        img16.to_str().unwrap(),
        pypff.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let objects: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2);
    let (a, b) = (&objects[0], &objects[1]);
    assert_eq!(a["file"], img16.to_str().unwrap());
    assert_eq!(a["data_product"], "img16");
    assert_eq!(a["module"], 1);
    assert_eq!(a["frame_size"], 2540);
    assert_eq!(a["complete_frames"], 4128);
    assert_eq!(a["torn_tail_bytes"], 640);
    assert_eq!(a["first"]["frame"], 0);
    assert_eq!(a["first"]["utc"], "2024-07-25T04:34:52.691344Z");
    assert_eq!(a["first"]["unix"], 1_721_882_092.691_344);
    assert_eq!(a["last"]["frame"], 4127);
    assert_eq!(a["last"]["tv_sec"], 1_721_882_096);
    assert_eq!(a["last"]["tv_usec"], 818_321);
    assert_eq!(
        (
            &b["data_product"],
            &b["module"],
            &b["complete_frames"],
            &b["frame_size"],
            &b["torn_tail_bytes"]
        ),
        (
            &"ph256".into(),
            &254.into(),
            &88.into(),
            &636.into(),
            &0.into()
        )
    );
}

#[test]
fn show_prints_the_header_and_pixel_statistics_of_a_frame() {
    let Some(dir) = samples() else {
        return;
    };
    let file = dir.join(PYPFF_PH256);
    let file = file.to_str().unwrap();
    let out = pff(&["show", file, "--frame", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(r#"{ "quabo_num": 3, "pkt_num":       5124, "pkt_tai":  229,"#),
        "{text}"
    );
    assert!(text.contains("pixels: 256 (16x16): min "), "{text}");

    // The JSON agrees with the pixels as the library decodes them.
    let frame = pff::PffFile::open(file).unwrap().read_frame(87).unwrap();
    let values: Vec<f64> = frame.pixels.values().collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let out = pff(&["show", file, "--frame", "last", "--json", "--pixels"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["frame"], 87);
    assert_eq!(v["header"]["quabo_num"], 0);
    assert_eq!(v["header"]["pkt_num"], 7372);
    assert_eq!(v["pixels"]["count"], 256);
    assert_eq!(v["pixels"]["min"], min);
    assert_eq!(v["pixels"]["max"], max);
    assert_eq!(v["pixels"]["mean"], mean);
    assert_eq!(v["pixel_values"].as_array().unwrap().len(), 256);
    assert_eq!(v["pixel_values"][0], values[0] as i64);
}

#[test]
fn show_beyond_the_last_complete_frame_says_how_many_exist() {
    let Some(dir) = samples() else {
        return;
    };
    let file = dir.join(LICK_IMG16);
    let out = pff(&["show", file.to_str().unwrap(), "--frame", "4128"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(err.contains("no frame 4128"), "{err}");
    assert!(err.contains("4128 complete frames (0 to 4127)"), "{err}");
}

#[test]
fn info_reports_a_bad_file_by_name_and_still_describes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir
        .path()
        .join("start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.pff");
    std::fs::write(&bad, b"this is not a PFF file").unwrap();
    let unnamed = dir.path().join("notes.txt");
    std::fs::write(&unnamed, b"{}").unwrap();
    let mut args = vec!["info", bad.to_str().unwrap(), unnamed.to_str().unwrap()];
    let good = samples().map(|d| d.join(PYPFF_PH256).to_str().unwrap().to_string());
    if let Some(good) = &good {
        args.push(good);
    }
    let out = pff(&args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(err.contains("expected '{' to open a header"), "{err}");
    assert!(err.contains(unnamed.to_str().unwrap()), "{err}");
    assert!(err.contains("--dp"), "{err}");
    if good.is_some() {
        assert!(stdout(&out).contains("88 complete frames"));
    }
}

#[test]
fn info_on_a_run_directory_describes_its_pff_files_and_nothing_else() {
    let Some(dir) = samples() else {
        return;
    };
    // The Lick directory also holds daq_config.json, data_config.json and
    // recording_ended, which are not frames.
    let lick = dir.join("lick-2024-07-25");
    let out = pff(&["info", "--json", lick.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let objects: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<_> = objects
        .iter()
        .map(|o| {
            (
                o["data_product"].as_str().unwrap(),
                o["module"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("img16", 1), ("ph256", 1), ("ph256", 3)]);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("hk.pff"), b"{}").unwrap();
    let out = pff(&["info", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no PFF-named files"),
        "{}",
        stderr(&out)
    );
}
