# envnix's image builder in Nix: lib.buildImage of envnix's flake, and what `envnix build`
# evaluates (envnix render copies this file into .envnix/ with the builders beside it), so
# both make the same image from the same lock by construction.
#
# It reads envnix.lock at evaluation time (no import-from-derivation, no Python): the lock's
# apt, pip, conda and tools sections give the artifacts, each a fixed-output fetch pinned by sha256;
# its image section gives everything else (layer plan, config, files, io.copy, run() steps);
# the build context gives the files io.copy names. Every package becomes its own tree
# derivation, trees are packed into layers and the layers into an OCI image layout by the
# Python programs in builders/, run by the pinned toolchain (toolchain.nix).
{ context                 # the build context (a path): where build.envd and io.copy sources are
, lock ? context + "/envnix.lock"
, tag ? null              # name:tag for the OCI layout's index; default the lock's defaultTag
, toolchain ? "pinned"    # "pinned", "host" (NOT reproducible) or "nixpkgs" (needs pkgs)
, pkgs ? null             # a nixpkgs package set: the nixpkgs toolchain, CUDA from nixpkgs
, builders                # envnix/builders
, toolchainNix            # envnix/toolchain/toolchain.nix
, shippedPin              # the toolchain pin for locks that record none
, hostPython ? "/usr/bin/python3"  # ESCAPE HATCH, toolchain = "host" only (never the
                          # default): the machine's python, NOT reproducible
, zstdPath ? null         # host toolchain only: a directory holding the zstandard module
, checkSources ? true     # refuse a lock older than the files the frontend read
, compression ? "gzip"    # layer blobs: "gzip" or "zstd" (tar+zstd media type); other bytes
, slim ? false            # leave out docs (but copyright files), man/info pages, locales
                          # (always so on a slim base: the lock's image.slim)
, platform ? null         # "linux/arm64": that platform's sections of a multi-platform lock
}@args:
let
  inherit (builtins) fromJSON readFile toJSON toFile hashFile hashString attrNames
    concatMap elemAt filter genList head length listToAttrs map substring stringLength
    match split isString concatStringsSep pathExists elem;

  lockText = readFile lock;
  lockData = fromJSON lockText;
  fail = msg: throw "envnix: ${toString lock}: ${msg}";
  # The platforms the lock holds: its top level's (inputs.apt.architecture; amd64 in locks
  # without one), then those under "platforms" (--platform linux/amd64,linux/arm64).
  archOf = s: s.inputs.apt.architecture or "amd64";
  topPlatform = "linux/${archOf lockData}";
  platformNames = [ topPlatform ] ++ attrNames (lockData.platforms or { });
  sections =
    if platform == null || platform == topPlatform then lockData
    else lockData.platforms.${platform} or (fail ("it holds no ${platform} (it holds "
      + "${concatStringsSep ", " platformNames}): run envnix lock --platform ${platform}"));
  arch = archOf sections;
  # A foreign platform's programs (triggers, run() steps) run under the pin's qemu-user;
  # nothing else differs for the builders but the names of its directories.
  machines = { amd64 = "x86_64"; arm64 = "aarch64"; };
  foreign = arch != "amd64";
  qemuProgram = "usr/bin/qemu-${machines.${arch} or (fail "unknown architecture ${arch}")}-static";
  qemu = if toolchain != "pinned" then "/usr/bin/qemu-${machines.${arch}}-static"
    else if pinned.emulators == null then fail ("the toolchain pin has no emulators for "
      + "${arch}: upgrade envnix (or run envnix lock)")
    else "${pinned.emulators}/${qemuProgram}";
  targetEnv = if foreign then { inherit arch; } else { };
  emulated = if foreign then { inherit arch qemu; } else { };
  image =
    if !(sections ? image) then
      fail "it has no image section (made by an envnix before lib.buildImage): run envnix lock"
    else if sections.image.format != 1 then
      fail "image format ${toString sections.image.format}: this envnix reads 1; upgrade envnix"
    else sections.image;
  plan = image.plan;
  system = "x86_64-linux";

  # A path inside the build context; a lock naming "..", an absolute path or an empty name
  # is refused (the lock may come from a stranger's repository).
  inContext = what: rel:
    let parts = filter isString (split "/" rel); in
    if rel == "." then context
    else if rel == "" || substring 0 1 rel == "/"
      || builtins.any (p: p == "" || p == "." || p == "..") parts
    then fail "${what} ${toJSON rel} is not a relative path inside the build context"
    else context + "/${rel}";

  # The files the frontend read (build.envd, load()ed files, env.yaml, requirements files,
  # the ignore file): a lock made from other bytes is stale.
  staleSources = filter (name:
    let path = inContext "source" name; in
    !(pathExists path) || hashFile "sha256" path != image.sources.${name})
    (attrNames image.sources);
  checked = if !checkSources || staleSources == [ ] then image
    else throw ("envnix: ${toString lock} is stale: ${concatStringsSep ", " staleSources} "
      + "changed since it was locked; run `envnix lock` (or `nix run <envnix> -- lock`)");

  imageTag = if tag != null then tag else image.defaultTag;

  # How layers are packed: explicit arguments (never a host default), since they change the
  # image's bytes. The gzip, non-slim derivations get no extra attribute, so their store
  # paths (and binary-cache hits) stay those of a build without these arguments.
  packing =
    if compression != "gzip" && compression != "zstd" then
      throw "envnix: compression ${toJSON compression}: expected \"gzip\" or \"zstd\""
    else if compression == "gzip" then { }
    else { inherit compression; } // hostZstd;
  # The host toolchain's Python has no zstandard: a builder that reads zstd (zstd layers,
  # .conda packages) gets envnix's copy as an input. Nothing for the pinned toolchain.
  hostZstd =
    if toolchain == "host" && zstdPath != null
    then { zstdPath = builtins.path { path = zstdPath; name = "envnix-zstandard"; }; }
    else { };
  # Debian's slim images' dpkg path filters (their /etc/dpkg/dpkg.cfg.d/docker): mklayer
  # leaves out what they exclude, and mkmeta writes them into the image so a later
  # `apt install` does the same.
  slimFilter = [
    "path-exclude /usr/share/doc/*"
    "path-include /usr/share/doc/*/copyright"
    "path-exclude /usr/share/groff/*"
    "path-exclude /usr/share/info/*"
    "path-exclude /usr/share/linda/*"
    "path-exclude /usr/share/lintian/overrides/*"
    "path-exclude /usr/share/locale/*"
    "path-exclude /usr/share/man/*"
  ];
  slimImage = slim || (image.slim or false) == true;  # a lock may say anything
  slimmed = if slimImage then { pathFilter = toJSON slimFilter; } else { };
  storeName = s:
    let
      swapped = concatMap (p: if isString p then [ p ] else [ "-" ])
        (split "[^A-Za-z0-9+._?=-]" s);
      joined = head (match "[.]*(.*)" (concatStringsSep "" swapped));
      cut = substring 0 180 joined;
    in if cut == "" then "artifact" else cut;

  # The pinned toolchain (stage 0, the tree of .debs, stdlib pycs): the lock's own pin.
  pinned = import toolchainNix {
    pin = lockData.toolchain or (fromJSON (readFile shippedPin));
  };
  inherit (pinned) tc tcLoader tcPycache;

  nixpkgsSet = if pkgs != null then pkgs else import <nixpkgs> { };
  interpreter =
    if toolchain == "pinned" then pinned.python
    else if toolchain == "host" then [ hostPython ]
    else if toolchain == "nixpkgs" then
      [ "${nixpkgsSet.python3.withPackages (ps: [ ps.zstandard ])}/bin/python3" ]
    else throw "envnix: unknown toolchain '${toolchain}' (expected pinned, host or nixpkgs)";

  # Only the builder programs: the same store path from a checkout, a wheel or .envnix/.
  builderFiles = builtins.path {
    path = builders;
    name = "envnix-builders";
    filter = path: type: type == "regular" && match "[A-Za-z0-9_]+[.]py" (baseNameOf path) != null
      && baseNameOf path != "__init__.py";
  };

  run = name: script: env: derivation ({
    inherit name system;
    builder = head interpreter;
    args = builtins.tail interpreter ++ [ "-E" "-s" "-B" "${builderFiles}/${script}" ];
  } // env);

  fetch = a: derivation {
    name = a.storeName;
    builder = "builtin:fetchurl";
    system = "builtin";
    url = a.url;
    urls = [ a.url ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = a.sha256;
    executable = false;
    unpack = false;
    preferLocalBuild = true;
    impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
  };

  # A .deb or a wheel of the lock as the builders take it (the image's and the source
  # builds' alike: the same entry gives the same derivation).
  debArtifact = p: { kind = "deb"; inherit (p) name version url sha256;
                     storeName = storeName (baseNameOf p.url); };
  wheelArtifact = w: { kind = "wheel"; inherit (w) name version url sha256;
                       storeName = storeName w.filename; };

  # The artifacts, keyed "kind:name" as the layer plan names them (envnix.render's
  # lock_artifacts makes the same list for seeding a --store).
  artifacts = listToAttrs (
    map (p: { name = "deb:${p.name}"; value = debArtifact p; }) sections.apt.packages
    ++ map (p: {
      name = "conda:${p.name}";
      value = { kind = "conda"; inherit (p) name version sha256 fn;
                # the channel's configured mirror first, as when it was locked
                url = if p.mirrors != [ ] then head p.mirrors else p.url;
                storeName = storeName p.fn;
                record = toJSON (removeAttrs p [ "kind" "mirrors" ]); };
    }) (sections.conda.packages or [ ])
    ++ map (w: { name = "wheel:${w.name}"; value = wheelArtifact w; }) sections.pip.wheels
    ++ map (s: {
      name = "sdist:${s.name}";
      value = { kind = "sdist"; inherit (s) name version url sha256 backend;
                storeName = storeName s.filename; backendPath = toJSON s.backend_path; };
    }) sourceBuilds.sdists
    ++ map (g: {
      name = "sdist:${g.name}";
      value = { kind = "git"; inherit (g) name version backend;
                storeName = storeName "${g.name}-${substring 0 12 g.commit}";
                backendPath = toJSON g.backend_path;
                # Nix's own git fetcher, at the pinned commit (any branch may hold it)
                source = builtins.fetchGit { inherit (g) url; rev = g.commit; allRefs = true;
                                             name = "source"; }; };
    }) (sourceBuilds.git or [ ])
    ++ map (t: {
      name = "tool:${t.name}";
      value = { kind = "tool"; inherit (t) name version url sha256;
                storeName = storeName t.filename;
                paths = toJSON t.paths; links = toJSON t.links; };
    }) (sections.tools or [ ]));

  # pip packages without a wheel for the target (envnix.lock.sources): each sdist is built
  # into a wheel by builders/build_sdist.py over a root of the image's .debs and conda
  # packages plus the lock's build-only .debs (gcc, headers) and build-requirement wheels,
  # then installed like any wheel. Same inputs, same derivations: a build .deb or wheel the
  # image also has is one store path.
  sourceBuilds = { sdists = [ ]; wheels = [ ]; debs = [ ]; } // (sections.source_builds or { });
  wheelTree = a: run "wheel-${a.storeName}" "install_wheel.py" {
    src = a.src or (fetch a); pkgName = a.name; pkgVersion = a.version;
    inherit (plan.python) sitePackages scriptsDir dataDir interpreter;
    headersDir = "${plan.python.headersRoot}/${a.name}";
  };
  debTree = a: run "deb-${a.storeName}" "unpack_deb.py" {
    src = fetch a; pkgName = a.name; pkgVersion = a.version;
  };
  buildRoot = [ skeleton ]
    ++ map (k: trees.${k}) (filter (k: elem artifacts.${k}.kind [ "deb" "conda" ])
         (attrNames artifacts))
    ++ map (p: debTree (debArtifact p)) sourceBuilds.debs
    ++ map (w: wheelTree (wheelArtifact w)) sourceBuilds.wheels;
  builtWheel = a: run "build-${a.storeName}" "build_sdist.py" ({
    src = a.source or (fetch a); pkgName = a.name; pkgVersion = a.version;
    trees = toJSON buildRoot;
    inherit (a) backend backendPath;
    inherit (plan.python) interpreter;
    inherit proot prootLoader;
  } // emulated);

  # The .debs of one layer are unpacked by one derivation, each into a directory of its own
  # (builders/unpack_deb.py with `debs`): Nix's cost per derivation, not the unpacking, was
  # most of what a cold build spent over the floor. A layer of one .deb keeps its own
  # derivation, as do the source builds' .debs.
  debGroups = listToAttrs (concatMap (l:
    let
      keys = filter (k: (artifacts.${k}.kind or "") == "deb") l.trees;
      group = run "debs-${l.name}" "unpack_deb.py" {
        debs = toJSON (map (k: let a = artifacts.${k}; in {
          src = fetch a; inherit (a) name version; dir = a.storeName;
        }) keys);
      };
    in if length keys < 2 then [ ]
       else map (k: { name = k; value = "${group}/${artifacts.${k}.storeName}"; }) keys)
    plan.layers);

  tree = key: a:
    if a.kind == "deb" then debGroups.${key} or (debTree a)
    else if a.kind == "tool" then run "tool-${a.storeName}" "install_tool.py" ({
      src = fetch a; pkgName = a.name; pkgVersion = a.version; inherit (a) paths links;
    } // (if builtins.match ".*[.]conda" a.storeName != null then hostZstd else { }))
    else if a.kind == "wheel" then wheelTree a
    else if a.kind == "sdist" || a.kind == "git" then wheelTree (a // { src = builtWheel a; })
    else run "conda-${a.storeName}" "install_conda.py" ({
      src = fetch a; pkgName = a.name; pkgVersion = a.version; pkgFile = a.fn;
      prefix = plan.condaPrefix; pythonVersion = plan.python.version; record = a.record;
    } // hostZstd);

  trees = builtins.mapAttrs tree artifacts;

  skeleton = run "envnix-skeleton" "mkmeta.py" { skeleton = "1"; };

  metaEnv = {
    trees = toJSON (map (k: trees.${k}) (attrNames trees));
    workdir = plan.workdir;
    users = toJSON plan.users;
    aptSources = toJSON plan.aptSources;
    aptAuto = toJSON plan.aptAuto;
  } // (if slimImage then { dpkgFilter = toJSON slimFilter; } else { })
    # base(image=...): the base's dpkg database and accounts are merged with what is added
    // (if plan.baseLayers == [ ] then { } else {
         baseTrees = toJSON (fromBase baseTree); baseStatus = plan.baseStatus or "";
       })
    // targetEnv;
  # With a triggers layer, one derivation writes the metadata tree (out) and then the
  # triggers' tree (caches): run on their own, the triggers waited for a build slot after
  # meta, behind any layer ready by then (builders/mkmeta_triggers.py says why). On a
  # base(image=...) the triggers run over the base's layers too.
  hasTriggers = builtins.any (l: l.name == "triggers") plan.layers;
  metaAndTriggers = run "envnix-meta" "mkmeta_triggers.py" (metaEnv // {
    outputs = [ "out" "caches" ];
    triggerTrees = toJSON (fromBase baseTree ++ concatMap
      (l: map (k: if k == "@meta" then "@meta" else treeFor k) l.trees)
      (filter (l: l.name != "triggers") plan.layers));
    triggers = toJSON plan.triggers;
    epoch = toString plan.mtime;
    inherit proot prootLoader;
  } // emulated);
  meta = if hasTriggers then metaAndTriggers.out else run "envnix-meta" "mkmeta.py" metaEnv;

  # Config files envd writes (pip.conf, sudoers, init script, ...) and runtime.mount points.
  files = run "envnix-files" "mktree.py" {
    kind = "files";
    files = toJSON image.files;
    mounts = toJSON image.mounts;
  };

  # io.copy: each source imported from the build context without the ignored paths
  # (.dockerignore / .envnixignore rules as regular expressions in the lock, checked by
  # envnix when it locked), then laid out by mktree.py.
  contextRoot = toString context;
  ignored = rel:
    builtins.elem (head (split "/" rel)) [ ".envnix" ".git" ]
    || builtins.foldl' (out: rule: if match rule.regex rel != null then !rule.negate else out)
         false image.ignore;
  # What of the context Nix imports: everything the ignore rules leave (path relative to it).
  notIgnored = path: type:
    !(ignored (substring (stringLength contextRoot + 1) (stringLength path) path));
  copySource = i: c: builtins.path {
    path = inContext "io.copy source" c.source;
    name = "envnix-copy-${toString (i + 1)}";
    filter = notIgnored;
  };
  # io.http: each file fetched as the packages are (fixed-output, the lock's sha256) and
  # placed in envd's /home/envd/extra_source, owned as io.copy's files (mktree.py checks the
  # name stays there); the attribute only when there are some, so other trees keep their paths.
  downloads = map (f: {
    src = fetch { inherit (f) url sha256; storeName = storeName f.filename; };
    target = "/home/envd/extra_source/${f.filename}";
  }) (sections.http.files or [ ]);
  contextTree = run "envnix-context" "mktree.py" ({
    kind = "context";
    copies = toJSON (genList (i: let c = elemAt image.copies i; in {
      src = copySource i c; inherit (c) source target;
    }) (length image.copies));
    owner = toJSON image.copyOwner;
  } // (if downloads == [ ] then { } else { downloads = toJSON downloads; }));

  # --cuda-provider nixpkgs: the cudaPackages set of the release, pinned by the nixpkgs revision
  # (nothing of it is in envnix.lock), with its closure as one package tree. CUDA is unfree:
  # envnix renders this only after NIXPKGS_ALLOW_UNFREE=1, and only this import allows it.
  cudaNixpkgs =
    let
      c = plan.nixpkgsCuda;
      np = if pkgs != null then pkgs
           else import <nixpkgs> { config = { allowUnfree = true; cudaSupport = true; }; };
      sets = filter (n: substring 0 13 n == "cudaPackages_") (attrNames np);
      set = np.${c.packageSet} or (throw ("envnix: this nixpkgs has no ${c.packageSet} for "
        + "CUDA ${c.version}; it has ${concatStringsSep ", " sets}"));
      pkg = a: set.${a} or (throw "envnix: ${c.packageSet} has no ${a}");
      cudnnMajor = head (builtins.splitVersion (pkg "cudnn").version);
      libs = map (a: let p = pkg a; in p.lib or p.out or p) c.attrs;
      bins = map (a: let p = pkg a; in p.bin or p.out or p) c.binAttrs;
    in
      if c.cudnnMajor != "" && cudnnMajor != c.cudnnMajor then
        throw ("envnix: ${c.packageSet}.cudnn is ${(pkg "cudnn").version}, build.envd asks "
          + "for cuDNN ${c.cudnnMajor}")
      else run "envnix-cuda-nixpkgs" "nix_closure.py" {
        closure = np.closureInfo { rootPaths = libs ++ bins; };
        libs = toJSON (map toString libs);
        bins = toJSON (map toString bins);
        pkgName = "cuda-nixpkgs";
      };

  # The caches the image's own tools compile (builders/triggers.py), run through proot over
  # every layer below this one; only when plan.layers has a triggers layer.
  triggersTree = metaAndTriggers.caches;

  treeFor = k:
    if k == "@skeleton" then skeleton
    else if k == "@triggers" then triggersTree
    else if k == "@cuda-nixpkgs" then cudaNixpkgs
    else if k == "@meta" then meta
    else if k == "@files" then files
    else if k == "@context" then contextTree
    else trees.${k} or (fail "the layer plan names ${k}, which the lock does not list");

  # Why layers are named "z-...": when more derivations are ready than there are build slots,
  # Nix starts them in the order of their names. Named "envnix-layer-..." they went before the
  # "wheel-..." trees, so each big layer's gzip (on every core) kept envnix-meta (which needs
  # every tree) and the triggers waiting, and they ran last, on one core. After every tree
  # name ("build-", "conda-", "deb-", "debs-", "envnix-", "tool-", "wheel-"), the trees, meta
  # and triggers go first and the layers fill the cores around them. The image's history
  # still names each layer "envnix-layer-<name>" (layerName, in layer.json).
  layerDrv = name: treesJSON: extra: run "z-envnix-layer-${name}" "mklayer.py" ({
    trees = treesJSON;
    mtime = toString plan.mtime;
    layerName = "envnix-layer-${name}";
  } // extra);
  layer = l: layerDrv l.name (toJSON (map treeFor l.trees)) (packing // slimmed);

  # base(image=...): each base layer blob, fetched by its digest, is an image layer as is
  # (layer dir for mkimage) and, for run(), a package tree with its whiteouts kept as files.
  baseLayer = i: a: run "envnix-base-layer-${toString (i + 1)}" "unpack_layer.py" {
    src = fetch a; output = "layer"; digest = a.digest; diffId = a.diffId; size = toString a.size;
  };
  baseTree = i: a: run "envnix-base-tree-${toString (i + 1)}" "unpack_layer.py" {
    src = fetch a; output = "tree"; pkgName = "base-layer-${toString (i + 1)}";
  };
  fromBase = f: genList (i: f i (elemAt plan.baseLayers i)) (length plan.baseLayers);

  # proot runs run() groups inside the sandbox (host: Debian's /usr/bin/proot). The pinned
  # one starts through the toolchain's ld.so: the sandbox has no /lib64/ld-linux-x86-64.so.2.
  proot =
    if toolchain == "host" then "/usr/bin/proot"
    else if toolchain == "pinned" then "${tc}/usr/bin/proot"
    else "${nixpkgsSet.proot}/bin/proot";
  prootLoader = toJSON (if toolchain == "pinned" then tcLoader else [ ]);

  # Every tree below the run() layers, in layer order: the root the commands run over.
  baseTrees = fromBase baseTree ++ concatMap (l: map treeFor l.trees) plan.layers;

  # run(mount_host=True): the context, imported as io.copy's sources are (ignore rules
  # applied), an input of that group only; run_steps.py shows it at the working directory.
  contextMount = builtins.path {
    path = context;
    name = "envnix-context-mount";
    filter = notIgnored;
  };
  runTrees = genList (i: run "envnix-run-${toString (i + 1)}" "run_steps.py" ({
    trees = toJSON (baseTrees ++ genList (j: elemAt runTrees j) i);
    commands = toJSON (elemAt plan.runs i).commands;
    workdir = plan.workdir;
    env = toJSON plan.runEnv;
    inherit proot prootLoader;
    pkgName = "run-${toString (i + 1)}";
  } // (if (elemAt plan.runs i).mountHost or false then { mount = contextMount; } else { })
    // emulated)) (length plan.runs);

  # run() layers hold what the user's commands made: packed, never filtered (an apt install
  # there already follows the image's dpkg filters).
  runLayer = i: t: layerDrv "run-${toString (i + 1)}" (toJSON [ t ]) packing;

  layers = fromBase baseLayer ++ map layer plan.layers
    ++ genList (i: runLayer i (elemAt runTrees i)) (length runTrees);

  # The OCI config template: the lock's, labelled with the digest of the lock's own bytes.
  config = toFile "image-config.json" (toJSON {
    schema = 1;
    template = image.config // {
      config = image.config.config // {
        Labels = (image.config.config.Labels or { }) // {
          "io.envnix.lock.digest" = "sha256:${hashString "sha256" lockText}";
        };
      };
    };
  });

  mkImage = archive: run "envnix-image-${storeName (builtins.replaceStrings [ ":" ] [ "-" ] imageTag)}"
    "mkimage.py" {
      layers = toJSON layers;
      inherit config;
      tag = imageTag;
      archive = if archive then "1" else "";
    };
  # Every platform the lock holds, each built by this same file for its platform, and one
  # OCI image index joining them (`index`; builders/mkindex.py) when there are several.
  images = listToAttrs (map (p: {
    name = p;
    value = (import ./image.nix (args // { platform = p; })).image;
  }) platformNames);
  index = if length platformNames < 2
    then fail "it holds one platform (${topPlatform}): build image, or lock with --platform"
    else run "envnix-index-${storeName (builtins.replaceStrings [ ":" ] [ "-" ] imageTag)}"
      "mkindex.py" {
        images = toJSON (map (p: images.${p}) platformNames);
        tag = imageTag;
      };
in
builtins.seq checked {
  image = mkImage false;
  inherit images index platformNames;
  archive = mkImage true;
  inherit layers trees skeleton meta files triggersTree runTrees;
  contextTree = contextTree;
  toolchain = tc;
  inherit tcPycache;
  # What `nix flake check` builds to say the lock is current (cheap: the toolchain's python).
  lockCheck = run "envnix-lock-check" "mktree.py" {
    kind = "files"; files = "{}"; mounts = "[]";
  };
}
