//! `pff info` and `pff show` on real frames say what their READMEs say
//! (the fixtures always, the full-size shared samples too when present),
//! and fail clearly, naming the file, where there is nothing to show.

use std::process::{Command, Output};

use testdata::{Origin, Sample};

/// What `pff info` calls each data product.
fn described(dp: &str) -> &'static str {
    match dp {
        "img16" => "img16 (movie, 32x32 u16)",
        "img8" => "img8 (movie, 32x32 u8)",
        "ph256" => "ph256 (pulse height, 16x16 i16)",
        "ph1024" => "ph1024 (pulse height, 32x32 i16)",
        other => panic!("no data product {other}"),
    }
}

fn frames_line(s: &Sample) -> String {
    let tail = match s.tail_bytes {
        0 => ", no torn tail".to_string(),
        t => format!(" + {t}-byte torn tail"),
    };
    format!(
        "{} complete frames of {} bytes{tail}",
        s.frames, s.frame_size
    )
}

/// The last node time of the Lick img16 recordings (the fixture is its
/// first 300 frames), as `info` prints it.
fn img16_last(s: &Sample) -> (u64, &'static str, f64) {
    match s.origin {
        Origin::Fixtures => (299, "2024-07-25T04:34:52.990338Z", 1_721_882_092.990_338),
        Origin::Shared => (4127, "2024-07-25T04:34:56.818321Z", 1_721_882_096.818_321),
    }
}

fn path_of(s: &Sample) -> String {
    s.path.to_str().unwrap().to_string()
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
    let samples = testdata::samples();
    let files: Vec<String> = samples.iter().map(path_of).collect();
    let mut args = vec!["info"];
    args.extend(files.iter().map(String::as_str));
    let out = pff(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // One block per file, in the order given.
    let blocks: Vec<&str> = text.split("\n/").collect();
    assert_eq!(blocks.len(), samples.len(), "{text}");
    for (block, s) in blocks.iter().zip(&samples) {
        assert!(block.contains(s.file_name()), "{s}: {block}");
        let what = format!("{}, module {}", described(s.dp), s.module);
        assert!(block.contains(&what), "{s}: {block}");
        assert!(block.contains(&frames_line(s)), "{s}: {block}");
        if s.lick && s.dp == "img16" {
            // First and last node times, to the microsecond.
            assert!(
                block.contains(
                    "first: frame 0, 2024-07-25T04:34:52.691344Z (Unix 1721882092.691344)"
                ),
                "{s}: {block}"
            );
            let (n, utc, unix) = img16_last(s);
            let last = format!("last:  frame {n}, {utc} (Unix {unix:.6})");
            assert!(block.contains(&last), "{s}: {block}");
        }
    }
}

#[test]
fn info_json_is_one_object_per_file_with_the_same_facts() {
    for img16 in testdata::lick_samples("img16", 1) {
        // And a pulse-height file: pypff's when present, else the fixture.
        let ph = testdata::samples()
            .into_iter()
            .rfind(|s| s.dp == "ph256")
            .unwrap();
        let out = pff(&["info", "--json", &path_of(&img16), &path_of(&ph)]);
        assert!(out.status.success(), "{}", stderr(&out));
        let objects: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objects.len(), 2);
        let (a, b) = (&objects[0], &objects[1]);
        assert_eq!(a["file"], path_of(&img16));
        assert_eq!(a["data_product"], "img16");
        assert_eq!(a["module"], 1);
        assert_eq!(a["frame_size"], 2540);
        assert_eq!(a["complete_frames"], img16.frames);
        assert_eq!(a["torn_tail_bytes"], img16.tail_bytes);
        assert_eq!(a["first"]["frame"], 0);
        assert_eq!(a["first"]["utc"], "2024-07-25T04:34:52.691344Z");
        assert_eq!(a["first"]["unix"], 1_721_882_092.691_344);
        let (n, utc, unix) = img16_last(&img16);
        assert_eq!(a["last"]["frame"], n);
        assert_eq!(a["last"]["utc"], utc);
        assert_eq!(a["last"]["unix"], unix);
        assert_eq!(a["last"]["tv_sec"], unix as i64);
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
                &ph.module.into(),
                &ph.frames.into(),
                &ph.frame_size.into(),
                &ph.tail_bytes.into()
            ),
            "{ph}"
        );
    }
}

#[test]
fn show_prints_the_header_and_pixel_statistics_of_a_frame() {
    // (file, the start of frame 0's header, the last frame's quabo_num
    // and pkt_num)
    let mut cases = vec![(
        testdata::fixture("ph256", 3),
        r#"{ "quabo_num": 1, "pkt_num":       5933, "pkt_tai":  530,"#,
        1,
        6050,
    )];
    // The pypff file: its first frame always (a fixture), all 88 with the
    // shared samples.
    for pypff in testdata::samples().into_iter().filter(|s| !s.lick) {
        let (quabo_num, pkt_num) = if pypff.frames == 1 {
            (3, 5124)
        } else {
            (0, 7372)
        };
        cases.push((
            pypff,
            r#"{ "quabo_num": 3, "pkt_num":       5124, "pkt_tai":  229,"#,
            quabo_num,
            pkt_num,
        ));
    }
    for (s, first_header, quabo_num, pkt_num) in cases {
        let file = path_of(&s);
        let out = pff(&["show", &file, "--frame", "0"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(first_header), "{s}: {text}");
        assert!(text.contains("pixels: 256 (16x16): min "), "{s}: {text}");

        // The JSON agrees with the pixels as the library decodes them.
        let last = s.frames - 1;
        let frame = pff::PffFile::open(&file).unwrap().read_frame(last).unwrap();
        let values: Vec<f64> = frame.pixels.values().collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let out = pff(&["show", &file, "--frame", "last", "--json", "--pixels"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["frame"], last, "{s}");
        assert_eq!(v["header"]["quabo_num"], quabo_num, "{s}");
        assert_eq!(v["header"]["pkt_num"], pkt_num, "{s}");
        assert_eq!(v["pixels"]["count"], 256);
        assert_eq!(v["pixels"]["min"], min);
        assert_eq!(v["pixels"]["max"], max);
        assert_eq!(v["pixels"]["mean"], mean);
        assert_eq!(v["pixel_values"].as_array().unwrap().len(), 256);
        assert_eq!(v["pixel_values"][0], values[0] as i64);
    }
}

#[test]
fn show_beyond_the_last_complete_frame_says_how_many_exist() {
    for s in testdata::lick_samples("img16", 1) {
        let file = path_of(&s);
        let n = s.frames.to_string();
        let out = pff(&["show", &file, "--frame", &n]);
        assert!(!out.status.success(), "{s}");
        let err = stderr(&out);
        assert!(err.contains(&file), "{err}");
        assert!(err.contains(&format!("no frame {n}")), "{err}");
        let range = format!("{n} complete frames (0 to {})", s.frames - 1);
        assert!(err.contains(&range), "{err}");
    }
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
    let good = testdata::fixture("ph256", 3);
    let out = pff(&[
        "info",
        bad.to_str().unwrap(),
        unnamed.to_str().unwrap(),
        &path_of(&good),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(err.contains("expected '{' to open a header"), "{err}");
    assert!(err.contains(unnamed.to_str().unwrap()), "{err}");
    assert!(err.contains("--dp"), "{err}");
    // The good file is still described.
    assert!(
        stdout(&out).contains(&frames_line(&good)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn info_on_a_run_directory_describes_its_pff_files_and_nothing_else() {
    // The Lick directories also hold daq_config.json and data_config.json
    // (and fixtures/ a README, the shared one recording_ended): not frames.
    for dir in testdata::lick_dirs() {
        let out = pff(&["info", "--json", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let seen: Vec<(String, u64)> = stdout(&out)
            .lines()
            .map(|l| {
                let o: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    o["data_product"].as_str().unwrap().to_string(),
                    o["module"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut want: Vec<Sample> = testdata::samples()
            .into_iter()
            .filter(|s| s.path.parent() == Some(dir.as_path()))
            .collect();
        want.sort_by(|a, b| a.file_name().cmp(b.file_name()));
        let want: Vec<(String, u64)> = want
            .iter()
            .map(|s| (s.dp.to_string(), u64::from(s.module)))
            .collect();
        assert!(want.len() >= 3, "{}", dir.display());
        assert_eq!(seen, want, "{}", dir.display());
    }

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
