//! Check-config: LinuxKit's defconfig check, the resolved config against the committed one.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "check-config",
    code: super::configure::CODE,
    ..PLAIN
};
