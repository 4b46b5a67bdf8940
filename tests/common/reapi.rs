//! REAPI messages of kbuild's remote-cache entries, rebuilt in the tests from
//! doc/remote-cache.md's description (not from kbuild's code), to find or forge entries.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use sha2::Digest as _;

pub fn sha256(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex(&sha2::Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The REAPI action digest of a kbuild action, rebuilt from doc/remote-cache.md's description
/// ("its Command is `kbuild <kind>` with output paths `kbuild-manifest.json` and `out`, its input
/// root the empty directory, its platform carries `kbuild-key-schema`, its salt is the key").
pub fn action_digest(kind: &str, key: &str, schema: u64) -> (re::Digest, Vec<Vec<u8>>) {
    let command = re::Command {
        arguments: vec!["kbuild".into(), kind.into()],
        output_paths: vec!["kbuild-manifest.json".into(), "out".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let root = re::Directory::default().encode_to_vec();
    let salt: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).unwrap())
        .collect();
    let action = re::Action {
        command_digest: Some(sha256(&command)),
        input_root_digest: Some(sha256(&root)),
        salt,
        platform: Some(re::Platform {
            properties: vec![re::platform::Property {
                name: "kbuild-key-schema".into(),
                value: schema.to_string(),
            }],
        }),
        ..Default::default()
    }
    .encode_to_vec();
    (sha256(&action), vec![command, root, action])
}
