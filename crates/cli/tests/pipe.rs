//! Output into a closed pipe ends the process quietly instead of panicking.

#[cfg(unix)]
#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let star = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cryosplat"))
        .args(["info", "--json", star])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cryosplat");
    // Close the reading end before the child writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE (13), or finished if everything was written before the pipe closed;
    // a panic exits with 101.
    assert!(out.status.success() || out.status.signal() == Some(13), "{:?}: {stderr}", out.status);
}
