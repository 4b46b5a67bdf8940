//! The messages of the Remote Workers API (`google.devtools.remoteworkers.v1test2`, bots.proto
//! and worker.proto), as prost messages with the field numbers of Google's published protos;
//! the Bots client is generated from them by tonic (build.rs). `bazel-remote-apis` carries
//! REAPI but not these. Only what a bot sends or reads is here: `AdminTemp` and
//! `PostBotEventTemp`, which BuildGrid ignores, are left out.

use prost_types::{Any, FieldMask, Timestamp};

/// The Bots service client.
pub mod bots {
    include!(concat!(
        env!("OUT_DIR"),
        "/google.devtools.remoteworkers.v1test2.Bots.rs"
    ));
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BotSession {
    /// Given by the server at creation; sent back on every update.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub bot_id: String,
    #[prost(enumeration = "BotStatus", tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<Timestamp>,
    /// BuildGrid's lease-synchronisation version, echoed back unchanged.
    #[prost(string, tag = "7")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "7")]
    pub id: String,
    /// `Any(Action)` or `Any(Digest)` of the Action, for REAPI leases.
    #[prost(message, optional, tag = "8")]
    pub payload: Option<Any>,
    /// `Any(ActionResult)` once the bot completes it.
    #[prost(message, optional, tag = "9")]
    pub result: Option<Any>,
    #[prost(enumeration = "LeaseState", tag = "2")]
    pub state: i32,
    #[prost(message, optional, tag = "3")]
    pub status: Option<bazel_remote_apis::google::rpc::Status>,
    #[prost(message, optional, tag = "4")]
    pub requirements: Option<Worker>,
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Worker {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
    /// BuildGrid reads `capacity` here: how many leases the bot takes at once.
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<Property>,
}

/// A key and a value; worker.proto declares the same shape three times (`Worker.Property`,
/// `Worker.Config`, `Device.Property`), identical on the wire.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Property {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub handle: String,
    /// Where BuildGrid's scheduler reads the platform a bot offers (of the first device).
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateBotSessionRequest {
    /// The instance name.
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateBotSessionRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
    #[prost(message, optional, tag = "3")]
    pub update_mask: Option<FieldMask>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BotStatus {
    Unspecified = 0,
    Ok = 1,
    Unhealthy = 2,
    HostRebooting = 3,
    /// Set on SIGTERM: the server assigns no new lease, the running ones finish.
    BotTerminating = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LeaseState {
    Unspecified = 0,
    Pending = 1,
    Active = 2,
    Completed = 4,
    Cancelled = 5,
}

impl Property {
    pub fn new(key: &str, value: &str) -> Property {
        Property {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A bot session as BuildGrid's own Python protos serialise it (one device, one config,
    /// one lease with a payload; printed by `BotSession.SerializeToString().hex()`), read by
    /// these messages and written back byte for byte.
    #[test]
    fn a_bot_session_reads_and_writes_as_buildgrid_serialises_it() {
        let python = "0a0173120162180122270a160a016812110a084f5346616d696c7912054c696e75781a0d0a08\
                      63617061636974791201322a4910023a036a6f6242400a3a747970652e676f6f676c65617069\
                      732e636f6d2f6275696c642e62617a656c2e72656d6f74652e657865637574696f6e2e76322e\
                      446967657374120201023a0133";
        let bytes = hex::decode(python).unwrap();
        let session = BotSession::decode(&bytes[..]).unwrap();
        assert_eq!(session.status, BotStatus::Ok as i32);
        assert_eq!(session.version, "3");
        let worker = session.worker.as_ref().unwrap();
        assert_eq!(
            worker.devices[0].properties,
            [Property::new("OSFamily", "Linux")]
        );
        assert_eq!(worker.configs, [Property::new("capacity", "2")]);
        let lease = &session.leases[0];
        assert_eq!(
            (lease.id.as_str(), lease.state),
            ("job", LeaseState::Active as i32)
        );
        assert!(
            lease
                .payload
                .as_ref()
                .unwrap()
                .type_url
                .ends_with(".v2.Digest")
        );
        assert_eq!(session.encode_to_vec(), bytes);
    }
}
