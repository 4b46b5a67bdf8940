//! The engine end to end on a fake kernel: build, rebuild nothing, change one input at a time.

mod common;

use common::Ws;

#[test]
fn smoke() {
    let ws = Ws::new();
    let r = ws.run(&[], 0);
    eprintln!("{}", r.stderr);
    eprintln!("{:?}", r.executed());
}
