//! InitHpIo as an operator meets it (SPEC §3 and §5): a failed
//! reconfiguration restores the one that worked, streams are told to retry
//! while it runs and why they ended after it, `simulate_daq` ignores
//! `data_dir`, `module_ids` is honoured, and `allowed_data_roots` cannot be
//! left by a link or by `..`.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use daqdata_server::InitOnStart;
use tonic::Code;

/// Fixture modules 1, 2, 3 written as 101, 102, 103, so that a frame of
/// this tree can never be mistaken for one of the simulator's.
const RENAMED: [(u32, u32); 3] = [(1, 101), (2, 102), (3, 103)];

#[tokio::test]
async fn a_reinit_that_fails_at_start_restores_the_working_configuration() {
    let tree = tempfile::tempdir().unwrap();
    let _replay = live_tree_at(tree.path(), 100.0, &RENAMED);
    // The simulated run's private directory is made under TMPDIR: with
    // TMPDIR missing, simulate_daq passes validation but fails at start.
    let server = BinServer::start("", &[("TMPDIR", "/nonexistent/dir")]).await;
    let mut c = server.client().await;

    let reply = c
        .init_hp_io(dir_request(tree.path()))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{}\n{}", reply.error_message, server.log());

    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(
        !reply.success,
        "simulate_daq started with TMPDIR missing:\n{}",
        server.log()
    );
    let why = &reply.error_message;
    assert!(why.contains("simulat"), "names what failed: {why}");
    assert!(why.contains("/nonexistent/dir"), "names the cause: {why}");
    assert!(why.contains("restored"), "says what it did about it: {why}");

    // A new stream gets the data_dir run's frames, from its files.
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let images: Vec<_> = take(&mut s, 30)
        .await
        .into_iter()
        .map(|m| m.pano_image.unwrap())
        .collect();
    let files = pff_names(tree.path());
    for image in &images {
        assert!(
            [101, 102, 103].contains(&image.module_id),
            "module {} is not the tree's",
            image.module_id
        );
        assert!(
            files.contains(&image.file),
            "{} is not in the tree",
            image.file
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_while_init_hp_io_runs_are_told_to_retry() {
    let data = tempfile::tempdir().unwrap();
    let _replay = live_tree_at(data.path(), 50.0, &[]);
    // Found alive, Hashpipe's pid would end the check at once; the run is
    // found active by its growing files instead.
    std::fs::remove_file(data.path().join("daq_hashpipe_pid")).unwrap();
    make_the_active_run_check_slow(data.path(), 1000, 800);
    let server = TestServer::start(None, |_| {}).await;

    // Opens streams one after another, on a connection of its own, until told
    // to stop: the codes it got, and the first UNAVAILABLE message.
    let stop = Arc::new(AtomicBool::new(false));
    let (tried_tx, mut tried) = tokio::sync::watch::channel(0u64);
    let spam = {
        let stop = stop.clone();
        let mut c = server.client().await;
        tokio::spawn(async move {
            let mut codes: HashMap<Code, u64> = HashMap::new();
            let mut retry_message = None;
            while !stop.load(Ordering::Acquire) {
                let r = c.stream_images(stream_request(true, true, 0.1, &[])).await;
                let code = match r {
                    Ok(_) => Code::Ok,
                    Err(s) => {
                        if s.code() == Code::Unavailable && retry_message.is_none() {
                            retry_message = Some(s.message().to_string());
                        }
                        s.code()
                    }
                };
                *codes.entry(code).or_default() += 1;
                tried_tx.send_modify(|n| *n += 1);
                // Leaves the walk its share of the machine.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (codes, retry_message)
        })
    };
    // The loop runs (refused as uninitialized) before InitHpIo is called.
    tokio::time::timeout(Duration::from_secs(10), tried.wait_for(|&n| n > 0))
        .await
        .expect("no StreamImages answered within 10 s")
        .unwrap();

    let mut c = server.client().await;
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        c.init_hp_io(dir_request(data.path())),
    )
    .await
    .expect("InitHpIo did not return within 60 s")
    .unwrap()
    .into_inner();
    stop.store(true, Ordering::Release);
    assert!(reply.success, "{}", reply.error_message);
    let (codes, retry_message) = tokio::time::timeout(Duration::from_secs(10), spam)
        .await
        .expect("the StreamImages loop did not stop")
        .unwrap();

    assert!(
        codes.get(&Code::Unavailable).is_some_and(|&n| n > 0),
        "no StreamImages was refused with UNAVAILABLE while InitHpIo ran: {codes:?}"
    );
    let message = retry_message.unwrap();
    assert!(message.contains("retry"), "{message}");
    let unexpected: Vec<_> = codes
        .keys()
        .filter(|c| !matches!(c, Code::Ok | Code::Unavailable | Code::FailedPrecondition))
        .collect();
    assert!(unexpected.is_empty(), "{codes:?}");
    // Once it returned, streams are let in again.
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    take(&mut s, 1).await;
}

/// Makes InitHpIo's active-run check (which stats PFF files, newest run
/// first, until one grew recently) walk for a while: `runs` run
/// directories newer than any real run, each a link to one directory of
/// `files` PFF files last written an hour ago. The links keep the tree
/// cheap to make while the walk costs `runs * files` stats.
fn make_the_active_run_check_slow(data_dir: &std::path::Path, runs: u32, files: u32) {
    let stale = data_dir.join("stale_files");
    std::fs::create_dir(&stale).unwrap();
    let hour_ago = pff::time::now() - Duration::from_secs(3600);
    for i in 0..files {
        let f = std::fs::File::create(stale.join(format!("stale_{i}.pff"))).unwrap();
        f.set_modified(hour_ago).unwrap();
    }
    // Far in the future, so that these come before the live run.
    let future = 4_000_000_000i64;
    for i in 0..runs {
        let start = pff::StartTime::from_unix(future + i64::from(i));
        let run = pff::RunName::new("FILLER", start, "filler").to_string();
        std::os::unix::fs::symlink(&stale, data_dir.join(run)).unwrap();
    }
}

#[tokio::test]
async fn a_forced_reinit_ends_open_streams_saying_hp_io_was_reconfigured() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut s = open(&mut c, stream_request(true, true, 0.05, &[])).await;
    take(&mut s, 2).await;

    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let (end, _) = read_to_end(&mut s).await;
    let status = end.expect_err("the stream ended without a status");
    assert_eq!(status.code(), Code::Cancelled, "{status}");
    let message = status.message();
    assert!(
        message.contains("hp_io") && message.contains("reconfigured"),
        "{message}"
    );
}

#[tokio::test]
async fn simulate_daq_ignores_data_dir_even_missing_or_outside_the_allowed_roots() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = allowed.path().to_path_buf();
    let server = TestServer::start(None, |c| c.allowed_data_roots = vec![root]).await;
    let mut c = server.client().await;
    for data_dir in [
        "/no/such/dir".to_string(),
        outside.path().display().to_string(),
    ] {
        let req = daqdata_proto::daqdata::InitHpIoRequest {
            data_dir: data_dir.clone(),
            ..sim_request()
        };
        let reply = c.init_hp_io(req).await.unwrap().into_inner();
        assert!(
            reply.success,
            "data_dir {data_dir}: {}",
            reply.error_message
        );
        let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
        take(&mut s, 5).await;
    }
}

#[tokio::test]
async fn init_hp_io_module_ids_limit_what_every_stream_gets() {
    let (_replay, tree) = live_tree(false, 200.0);
    let server = TestServer::start(None, |_| {}).await;
    let mut c = server.client().await;
    // The tree holds several modules, each with movie and pulse-height data.
    let names = pff_names(tree.path());
    let modules: BTreeSet<u32> = names
        .iter()
        .map(|n| pff::PffName::parse(n).unwrap().module.get())
        .collect();
    assert!(modules.len() >= 2 && modules.contains(&2), "{modules:?}");

    let req = daqdata_proto::daqdata::InitHpIoRequest {
        module_ids: vec![2],
        ..dir_request(tree.path())
    };
    let reply = c.init_hp_io(req).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    // The stream asks for every module.
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    let got: BTreeSet<u32> = take(&mut s, 50)
        .await
        .into_iter()
        .map(|m| m.pano_image.unwrap().module_id)
        .collect();
    assert_eq!(got, BTreeSet::from([2]));
}

#[tokio::test]
async fn links_and_dot_dot_cannot_leave_the_allowed_data_roots() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("root");
    let outside = parent.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    // Live runs on both sides: only the root check can refuse these.
    let _outside_run = live_tree_at(&outside, 50.0, &[]);
    let _inside_run = live_tree_at(&root.join("sub"), 50.0, &[]);
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let allowed = root.clone();
    let server = TestServer::start(None, |c| c.allowed_data_roots = vec![allowed]).await;
    let mut c = server.client().await;

    for escape in [root.join("link"), root.join("..").join("outside")] {
        let status = c.init_hp_io(dir_request(&escape)).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{}: {status}",
            escape.display()
        );
    }
    // A genuine subdirectory, and a link that stays inside the root (as a
    // `current -> run42` link on a DAQ node does), are let in.
    std::os::unix::fs::symlink(root.join("sub"), root.join("current")).unwrap();
    for inside in [root.join("sub"), root.join("current")] {
        let reply = c.init_hp_io(dir_request(&inside)).await;
        let reply = reply
            .unwrap_or_else(|s| panic!("{}: {s}", inside.display()))
            .into_inner();
        assert!(
            reply.success,
            "{}: {}",
            inside.display(),
            reply.error_message
        );
    }
}

/// The Status RPC's answer (SPEC §2): whether hp_io runs, and its line.
async fn status(
    c: &mut daqdata_proto::daqdata::daq_data_client::DaqDataClient<tonic::transport::Channel>,
) -> (bool, String) {
    let reply = c.status(()).await.unwrap().into_inner();
    assert!(!reply.message.is_empty(), "Status's message is never empty");
    assert!(
        !reply.message.contains('\n'),
        "Status's message is one line: {:?}",
        reply.message
    );
    (reply.hp_io_initialized, reply.message)
}

#[tokio::test]
async fn status_says_what_hp_io_follows_or_why_it_does_not() {
    let server = BinServer::start("", &[]).await;
    let mut c = server.client().await;
    let (initialized, message) = status(&mut c).await;
    assert!(!initialized);
    assert!(
        message.contains("not initialized") && message.contains("InitHpIo"),
        "{message}"
    );

    // A refused InitHpIo is why hp_io still does not run.
    let empty = tempfile::tempdir().unwrap();
    let refused = c.init_hp_io(dir_request(empty.path())).await;
    assert_eq!(code(refused), Code::FailedPrecondition);
    let (initialized, message) = status(&mut c).await;
    assert!(!initialized);
    assert!(
        message.contains("not initialized")
            && message.contains("no active run")
            && message.contains(&empty.path().display().to_string()),
        "{message}"
    );

    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let (initialized, message) = status(&mut c).await;
    assert!(initialized);
    assert!(message.contains("follows the simulated run"), "{message}");

    // A refused re-init leaves the running configuration, and its line.
    assert_eq!(
        code(c.init_hp_io(dir_request(empty.path())).await),
        Code::FailedPrecondition
    );
    // Hashpipe's part, after "; Hashpipe", moves with its counters.
    let hp_io_part = |m: &str| m.split("; Hashpipe").next().unwrap_or_default().to_string();
    let (initialized, again) = status(&mut c).await;
    assert_eq!(
        (initialized, hp_io_part(&again)),
        (true, hp_io_part(&message)),
        "a refused re-init changed nothing"
    );
}

/// How a DAQ run begins under a server that waits for it.
enum Feed {
    /// Hashpipe writes PFF files (daqsim's replay into the data directory).
    Files,
    /// Hashpipe connects to the server's sockets and pushes frames.
    Sockets,
}

/// SPEC §8: a server started with an hp_io_config.json before any run
/// starts all the same, says in Status that it waits, and follows the run
/// when `feed` begins it, with no InitHpIo, for a viewer already open.
async fn a_start_up_config_waits_for_the_run_that(feed: Feed) {
    let data = tempfile::tempdir().unwrap();
    let hp_io = data.path().join("hp_io_config.json");
    let run_dir = data.path().join("data");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::write(
        &hp_io,
        format!(
            r#"{{"data_dir": "{}", "update_interval_seconds": 0.05, "force": false, "simulate_daq": false, "module_ids": []}}"#,
            run_dir.display()
        ),
    )
    .unwrap();
    let server = BinServer::start(
        &format!("init_hp_io_config = \"{}\"\n", hp_io.display()),
        &[],
    )
    .await;
    let mut c = server.client().await;
    let (initialized, message) = status(&mut c).await;
    assert!(initialized, "{message}");
    assert!(
        message.contains(&format!("waiting for a run under {}", run_dir.display())),
        "{message}"
    );
    for dp in ["img8", "img16", "ph256", "ph1024"] {
        let sock = server.dir.path().join(format!("hashpipe.dp_{dp}.sock"));
        assert!(sock.exists(), "Hashpipe's {dp} socket does not listen");
    }
    // A viewer who comes early waits for frames, not for an error.
    let mut early = open(&mut c, stream_request(true, true, 0.0, &[])).await;

    // The DAQ starts: no InitHpIo, and the run is followed.
    let _files;
    let _sockets;
    match feed {
        Feed::Files => _files = live_tree_at(&run_dir, 50.0, &RENAMED),
        Feed::Sockets => {
            _sockets = daqsim::SocketPush::start(
                daqsim::Fixtures::embedded(),
                daqsim::SocketPushConfig {
                    template: private_hashpipe_sockets(server.dir.path()),
                    rate: Some(50.0),
                    modules: RENAMED.iter().map(|&(a, b)| (a.into(), b.into())).collect(),
                    reconnect: Duration::from_millis(100),
                    ..daqsim::SocketPushConfig::default()
                },
            )
            .unwrap()
        }
    }
    let images = take(&mut early, 5).await;
    for r in &images {
        let module = r.pano_image.as_ref().unwrap().module_id;
        assert!((101..=103).contains(&module), "module {module}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (initialized, message) = status(&mut c).await;
        if message.contains("follows the data_dir") {
            assert!(initialized);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Status still says {message:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_start_up_config_before_any_run_waits_for_hashpipes_files() {
    a_start_up_config_waits_for_the_run_that(Feed::Files).await;
}

#[tokio::test]
async fn a_start_up_config_before_any_run_waits_for_hashpipes_sockets() {
    a_start_up_config_waits_for_the_run_that(Feed::Sockets).await;
}

/// Where a reconfiguration left the server after its caller gave up: a
/// new stream gets an image within a generous deadline (UNAVAILABLE while
/// the reconfiguration still runs is retried), or what it was told.
async fn serves_a_new_stream(
    c: &mut daqdata_proto::daqdata::daq_data_client::DaqDataClient<tonic::transport::Channel>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match c.stream_images(stream_request(true, true, 0.0, &[])).await {
            // A stream opened just before the reconfiguration took over is
            // ended by it; the next one is tried.
            Ok(s) => match tokio::time::timeout_at(deadline, s.into_inner().message()).await {
                Ok(Ok(Some(_))) => return Ok(()),
                Ok(other) => last = format!("the stream ended: {other:?}"),
                Err(_) => last = "a stream opened but sent nothing".into(),
            },
            Err(s) => last = format!("{:?}: {}", s.code(), s.message()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last)
}

/// Notes on `tried` whether the server serves a new stream; if it does
/// not, an InitHpIo that runs to its end sets it right, so that each
/// abandoned call is judged on its own.
async fn check_and_recover(
    c: &mut daqdata_proto::daqdata::daq_data_client::DaqDataClient<tonic::transport::Channel>,
    tried: &mut String,
) {
    let why = serves_a_new_stream(c).await.err();
    tried.push_str(&format!(": {why:?}"));
    if why.is_some() {
        let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
        assert!(reply.success, "{}", reply.error_message);
    }
}

/// SPEC §3: a reconfiguration runs to its end (the new configuration, or
/// the old one restored) whatever its caller does; only the reply may be
/// lost. The calls give up at many points: deadlines from 0.5 ms to 50 ms
/// (enforced by the server) and futures dropped by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_hp_io_whose_caller_gives_up_leaves_the_server_serving() {
    let server = TestServer::start(Some(InitOnStart::Simulate), |_| {}).await;
    let mut c = server.client().await;
    let mut tried = Vec::new();
    let mut deadline = Duration::from_micros(500);
    while deadline <= Duration::from_millis(50) {
        tried.push(format!("deadline {deadline:?}"));
        let mut req = tonic::Request::new(sim_request());
        req.set_timeout(deadline);
        let _ = c.init_hp_io(req).await;
        deadline = deadline.mul_f64(1.2);
        check_and_recover(&mut c, tried.last_mut().unwrap()).await;
    }
    for after in (0..40).map(|k| Duration::from_micros(500 * k)) {
        tried.push(format!("dropped after {after:?}"));
        let mut caller = c.clone();
        let call = tokio::spawn(async move { caller.init_hp_io(sim_request()).await });
        tokio::time::sleep(after).await;
        call.abort();
        check_and_recover(&mut c, tried.last_mut().unwrap()).await;
    }
    let broken: Vec<_> = tried.iter().filter(|t| !t.ends_with(": None")).collect();
    assert!(
        broken.is_empty(),
        "{} of {} abandoned InitHpIo calls left the server not serving new streams:\n{broken:#?}",
        broken.len(),
        tried.len()
    );
}

/// The simulations' private run directories under `tmp`: one per running
/// simulated configuration (a stopped one removes its own).
fn simulations(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("daqdata-sim-"))
        .collect()
}

/// SPEC §3: at most one InitHpIo runs at a time. Two sent at the same
/// moment both succeed, one after the other, and leave exactly one
/// configuration running (the one replaced first is stopped, not leaked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_init_hp_io_at_the_same_moment_run_one_after_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().display().to_string();
    let server = BinServer::start("", &[("TMPDIR", &tmpdir)]).await;
    let mut c = server.client().await;
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    assert_eq!(simulations(tmp.path()).len(), 1);

    for round in 0..5 {
        // Separate connections, so neither waits for the other's bytes.
        let (mut a, mut b) = (server.client().await, server.client().await);
        let (ra, rb) = tokio::join!(a.init_hp_io(sim_request()), b.init_hp_io(sim_request()));
        for (who, r) in [("first", ra), ("second", rb)] {
            let reply = r
                .unwrap_or_else(|s| panic!("round {round}: the {who} was refused: {s}"))
                .into_inner();
            assert!(
                reply.success,
                "round {round}, {who}: {}",
                reply.error_message
            );
        }
        let running = simulations(tmp.path());
        assert_eq!(
            running.len(),
            1,
            "round {round}: {running:?}\n{}",
            server.log()
        );
        let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
        take(&mut s, 1).await;
    }
}

/// SPEC §3: when the new settings fail and so does the previous working
/// configuration, the reply says both, hp_io is left not initialized
/// (Status says why, streams are FAILED_PRECONDITION), and a later
/// InitHpIo that works sets it right.
#[tokio::test]
async fn a_failed_restore_leaves_hp_io_uninitialized_and_says_why() {
    let parent = tempfile::tempdir().unwrap();
    let tree = parent.path().join("run");
    let replay = live_tree_at(&tree, 100.0, &RENAMED);
    // simulate_daq fails at start with TMPDIR missing (its private run
    // directory is made there).
    let server = BinServer::start("", &[("TMPDIR", "/nonexistent/dir")]).await;
    let mut c = server.client().await;
    let reply = c.init_hp_io(dir_request(&tree)).await.unwrap().into_inner();
    assert!(reply.success, "{}\n{}", reply.error_message, server.log());

    // The working configuration's tree goes away, so it cannot come back.
    drop(replay);
    std::fs::remove_dir_all(&tree).unwrap();
    let reply = c.init_hp_io(sim_request()).await.unwrap().into_inner();
    assert!(!reply.success, "simulate_daq started:\n{}", server.log());
    let why = &reply.error_message;
    assert!(
        why.contains("/nonexistent/dir"),
        "names the first cause: {why}"
    );
    assert!(
        why.contains("restoring") && why.contains(&tree.display().to_string()),
        "names the configuration it could not restore: {why}"
    );
    assert!(
        why.contains("call InitHpIo again"),
        "says what to do: {why}"
    );

    let status = c.status(()).await.unwrap().into_inner();
    assert!(!status.hp_io_initialized, "{status:?}");
    assert!(status.message.contains("restoring"), "{status:?}");
    let refused = c.stream_images(stream_request(true, true, 0.0, &[])).await;
    assert_eq!(code(refused), Code::FailedPrecondition);

    let tree = parent.path().join("again");
    let _replay = live_tree_at(&tree, 100.0, &RENAMED);
    let reply = c.init_hp_io(dir_request(&tree)).await.unwrap().into_inner();
    assert!(reply.success, "{}", reply.error_message);
    let mut s = open(&mut c, stream_request(true, true, 0.0, &[])).await;
    take(&mut s, 1).await;
}
