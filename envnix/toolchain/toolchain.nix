# The pinned toolchain inside Nix (docs/toolchain.md), shared by every rendered default.nix
# (envnix render copies this file next to it) and by envnix's own flake (flake.nix at the
# project root), so both make the same store paths from the same code.
#
# `pin` is the pin as default.nix reads it (toolchain-pin.json: envnix.lock.toolchain_pin's
# for_nix) or the shipped bookworm-amd64.json itself: their only difference, the stage 0
# binary's "package/" prefix, is taken off here.
#
# The toolchain is a recursive fixed-output path, so its store path and bytes are the pin's
# whatever extracted it. Stage 0 is a static busybox from an npm tarball, which
# builtin:unpack-channel unpacks (one top-level directory, executable bit kept); it runs only
# `ar x` and `tar xJf` on the pinned .debs. envnix itself adds the same path to a --store
# directory (see docs/toolchain.md); Nix skips this build when the path is already there.
{ pin }:
let
  system = "x86_64-linux";
  fetchTo = name: url: sha256: derivation {
    inherit name url;
    builder = "builtin:fetchurl";
    system = "builtin";
    urls = [ url ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = sha256;
    executable = false;
    unpack = false;
    preferLocalBuild = true;
    impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
  };
  stage0 = derivation {
    name = "envnix-stage0-busybox";
    builder = "builtin:unpack-channel";
    system = "builtin";
    src = fetchTo pin.stage0.name pin.stage0.url pin.stage0.sha256;
    channelName = "stage0";
  };
  binary = pin.stage0.binary;
  unprefixed = if builtins.substring 0 8 binary == "package/"
    then builtins.substring 8 (builtins.stringLength binary) binary else binary;
  busybox = "${stage0}/stage0/${unprefixed}";

  # The data.tar.xz of each .deb ({ name, url, sha256 }) extracted into one directory by
  # stage 0; a recursive fixed-output path when narSha256 is given (the toolchain is one).
  debTree = name: debs: narSha256: derivation ({
    inherit name system;
    builder = busybox;
    args = [ "sh" "-ec" ''
      ${busybox} mkdir "$out"
      for deb in $debs; do
        ${busybox} rm -rf x
        ${busybox} mkdir x
        cd x
        ${busybox} ar x "$deb"
        ${busybox} tar xJf data.tar.xz -C "$out"
        cd ..
      done
    '' ];
    debs = map (d: fetchTo "${d.name}.deb" d.url d.sha256) debs;
    PATH = "/path-not-set";
  } // (if narSha256 == null then { } else {
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = narSha256;
  }));

  tc = debTree pin.storeName pin.debs pin.narSha256;
  tcLibs = "${tc}/lib/x86_64-linux-gnu:${tc}/usr/lib/x86_64-linux-gnu";
  tcLoader = [ "${tc}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "--library-path" tcLibs ];

  # Debian's .debs ship no .pyc (its postinst compiles them), and the builders run with -B:
  # without these every builder compiled the stdlib it imports (0.3 s a start). Unchecked-hash
  # pycs under a pycache prefix: read as they are, never written; they change no image byte.
  tcPycache = derivation {
    name = "${pin.storeName}-pycache";
    inherit system;
    builder = "${tc}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
    args = [ "--library-path" tcLibs "${tc}/usr/bin/python3.11" "-E" "-s" "-X"
      "pycache_prefix=${placeholder "out"}" "-m" "compileall" "-q" "-j" "1"
      "--invalidation-mode" "unchecked-hash" "-x" "(/test/|/tests/|lib2to3|idlelib|turtledemo)"
      "${tc}/usr/lib/python3.11" "${tc}/usr/lib/python3/dist-packages" ];
  };

  # The pin's emulators (Debian's qemu-user-static): only the listed programs, a store path
  # of their own (recursive fixed-output), fetched only by a build for a foreign platform.
  emulators = if !(pin ? emulators) then null else derivation {
    name = pin.emulators.storeName;
    inherit system;
    builder = busybox;
    args = [ "sh" "-ec" ''
      ${busybox} mkdir "$out" x
      cd x
      ${busybox} ar x "$deb"
      ${busybox} tar xJf data.tar.xz -C "$out" $programs
    '' ];
    deb = let d = builtins.head pin.emulators.debs; in fetchTo "${d.name}.deb" d.url d.sha256;
    programs = map (p: "./${p}") pin.emulators.programs;
    PATH = "/path-not-set";
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = pin.emulators.narSha256;
  };
in
{
  inherit fetchTo stage0 busybox debTree tc tcLibs tcLoader tcPycache emulators;
  # The command line that runs a builder's Python (loader, interpreter, stdlib pycs).
  python = tcLoader ++ [ "${tc}/usr/bin/python3.11" "-X" "pycache_prefix=${tcPycache}" ];
}
