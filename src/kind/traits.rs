//! The facts each kind of action declares about itself (one file per kind beside this one).

/// What kbuild does with one kind of action, besides running its recipe.
pub struct Traits {
    /// The kind's name: the first word of its actions' names, in keys, logs and `--events`.
    pub name: &'static str,
    /// Bumped by hand when the outputs change for a reason outside kbuild's code (a tool it
    /// calls behaves differently); enters every key of the kind.
    pub version: u32,
    /// The source files (under src/) whose code decides what the kind produces: their digest
    /// enters every key of the kind, so changing a command line, a make variable, a tar layout
    /// or an OCI field changes those keys without anyone remembering to bump `version`. Plain
    /// helpers (digests, paths, the cache) do not belong here.
    pub code: &'static [&'static str],
    /// Its commands run through the executor, so its key holds the toolchain's identity and
    /// its code includes how commands reach a build.
    pub toolchain: bool,
    /// Work no kernel waits for (the source snapshot, the UAPI headers): it runs at the lowest
    /// CPU priority, so on a busy machine it takes only what the compile leaves idle.
    pub background: bool,
    /// A run holds its outputs locally even when the remote cache has them, because `out/` or
    /// a push reads them; other remote hits are fetched only for a local miss that reads them.
    pub held: bool,
    /// Before `out/` links anything, the outputs of these actions must be materialisable now;
    /// what is not is evicted and built again in the same run.
    pub checked_for_out: bool,
    /// Where `out/` shows the result.
    pub out: OutLink,
    /// How the result goes up to a remote cache.
    pub upload: Upload,
    /// Its parameters carry the tag hash of its series and variant, filled in after lowering.
    pub tagged: bool,
    /// Its result describes an image rather than making it (the SBOM, the provenance): it is
    /// left out of the tag hash, which names what makes the image, so a machine's builder id
    /// or a change in how kbuild writes an SBOM renames no image.
    pub describes: bool,
    /// Its commands can run on a remote-execution cluster (`--remote-executor`), as one REAPI
    /// command that src/recipe/remote.rs makes of the recipe.
    pub remote: bool,
}

/// Where `out/` shows an action's result, for each target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutLink {
    Nothing,
    /// `out/<series>/<target>/`: the whole output tree.
    Tree,
    /// `out/<series>/<target>.tags`: the output's `tags` file.
    TagsFile,
}

/// How a result is stored in a remote cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Upload {
    /// The manifest and every file.
    Files,
    /// The manifest alone: the files are cheaper to make again here than to send (a patched
    /// kernel tree is 1.3 GB in 80,000 files, which the tarball and the patches make again in
    /// 10 to 20 seconds). The manifest still gives dependents their keys.
    ManifestOnly,
}

/// The traits most kinds share; each kind's file says where it differs.
pub const PLAIN: Traits = Traits {
    name: "",
    version: 2,
    code: &[],
    toolchain: false,
    background: false,
    held: false,
    checked_for_out: false,
    out: OutLink::Nothing,
    upload: Upload::Files,
    tagged: false,
    describes: false,
    remote: false,
};
