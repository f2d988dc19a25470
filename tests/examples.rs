//! The examples fail like finished programs: on a port that is taken, each
//! prints one line with the address and what to do, and exits non-zero.

mod common;

use std::net::TcpListener;

use common::*;

#[test]
fn every_example_on_a_taken_port_says_so_in_one_line_and_exits_non_zero() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = taken.local_addr().expect("its address").to_string();
    for name in [
        "echo",
        "echo_closures",
        "autobahn",
        "ticker",
        "rooms",
        "async_echo",
    ] {
        let exited = run_to_exit(&build_example(name), &[("BIND", &addr)]);
        assert!(
            !exited.status.success(),
            "{name} exited with {}",
            exited.status
        );
        let lines: Vec<&str> = exited.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name} printed {:?}", exited.stderr);
        assert!(
            lines[0].starts_with(&format!("{name}: cannot listen on {addr}: "))
                && lines[0].ends_with("; choose another BIND"),
            "{name} printed {:?}",
            lines[0]
        );
    }
}

#[test]
fn async_echo_with_a_delay_that_is_no_number_says_so_and_exits_non_zero() {
    let exited = run_to_exit(
        &build_example("async_echo"),
        &[("BIND", "127.0.0.1:0"), ("DELAY_MS", "soon")],
    );
    assert!(!exited.status.success(), "exited with {}", exited.status);
    assert_eq!(
        exited.stderr,
        "async_echo: DELAY_MS must be a number of milliseconds, got \"soon\"; unset it for 100\n"
    );
}
