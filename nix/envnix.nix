# envnix itself as a Nix package (flake.nix's packages.x86_64-linux.default), without nixpkgs:
# the pinned toolchain's python 3.11 (envnix/toolchain/toolchain.nix, the same code every
# rendered default.nix builds it with), envnix's runtime dependencies as the wheels pinned in
# envnix-wheels.json (scripts/pin-envnix-wheels writes it), each installed by envnix's own
# builders/install_wheel.py, and envnix's sources. bin/envnix and bin/uv start through the
# toolchain's loader with its library path, so they need nothing from the host but Nix. The
# host programs envnix runs (gpgv, skopeo) and the data they read (Debian's archive keyring,
# CA certificates) come as bookworm .debs pinned in envnix-tools.json (scripts/pin-envnix-tools).
let
  system = "x86_64-linux";
  version = builtins.head (builtins.match ''.*__version__ = "([^"]+)".*''
    (builtins.readFile ../envnix/__init__.py));
  pinned = import ../envnix/toolchain/toolchain.nix {
    pin = builtins.fromJSON (builtins.readFile ../envnix/toolchain/bookworm-amd64.json);
  };
  inherit (pinned) busybox tc;
  # Both pin files carry "format": 1 (scripts/pin-envnix-*); a newer one needs a newer envnix.
  readPins = file: let p = builtins.fromJSON (builtins.readFile file); in
    if p.format == 1 then p
    else throw "${toString file}: format ${toString p.format}, this envnix reads 1";
  pins = readPins ./envnix-wheels.json;

  # Libraries the wheels' extensions (libgcc_s) and the stdlib's ssl module (libssl, libcrypto)
  # link to that the toolchain leaves out: bookworm .debs pinned next to the wheels.
  runtimeLibs = pinned.debTree "envnix-runtime-libs" pins.debs null;
  libs = "${pinned.tcLibs}:${runtimeLibs}/lib/x86_64-linux-gnu:"
    + "${runtimeLibs}/usr/lib/x86_64-linux-gnu";
  loader = "${tc}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

  # gpgv and skopeo with the libraries they load beyond the ones above, and the keyring and
  # CA certificates as Debian ships them (ca-certificates' postinst would write the bundle).
  tools = readPins ./envnix-tools.json;
  toolsTree = pinned.debTree "envnix-tools" tools.debs null;
  toolsData = pinned.debTree "envnix-tools-data" tools.data null;
  toolLibs = "${libs}:${toolsTree}/lib/x86_64-linux-gnu:${toolsTree}/usr/lib/x86_64-linux-gnu";
  keyring = "${toolsData}/usr/share/keyrings/debian-archive-keyring.gpg";
  python = "${tc}/usr/bin/python3.11";

  builders = builtins.path { path = ../envnix/builders; name = "envnix-builders"; };
  prefix = "/envnix";  # the image path install_wheel.py writes under; copied to $out below
  wheel = w: derivation {
    name = "envnix-wheel-${w.name}-${w.version}";
    inherit system;
    builder = builtins.head pinned.python;
    args = builtins.tail pinned.python ++ [ "-E" "-s" "-B" "${builders}/install_wheel.py" ];
    src = pinned.fetchTo w.filename w.url w.sha256;
    pkgName = w.name;
    pkgVersion = w.version;
    sitePackages = "${prefix}/lib/python3.11/site-packages";
    scriptsDir = "${prefix}/bin";
    dataDir = prefix;
    headersDir = "${prefix}/include/${w.name}";
    interpreter = python;
  };

  # envnix's package as pip installs it: envnix/ (code, builders, pin, toolchain.nix) and
  # templates/ as envnix/templates.
  sourceOf = dir: name: builtins.path {
    path = dir;
    inherit name;
    filter = path: type:
      let base = baseNameOf path; in
      if type == "directory" then base != "__pycache__"
      else base == "README.md" || builtins.match ".*\\.(py|j2|json|nix)" base != null;
  };
  source = sourceOf ../envnix "envnix-source";
  templates = sourceOf ../templates "envnix-templates";
in
derivation {
  name = "envnix-${version}";
  inherit system source templates toolsData;
  programs = tools.programs;
  builder = busybox;
  PATH = "/path-not-set";
  trees = map wheel pins.wheels;
  args = [ "sh" "-ec" ''
    B=${busybox}
    site=$out/lib/python3.11/site-packages
    $B mkdir -p $out/bin $out/libexec
    for t in $trees; do
      $B cp -R $t/root${prefix}/. $out/
      $B chmod -R u+w $out
    done
    $B cp -R $source $site/envnix
    $B chmod -R u+w $site/envnix
    $B cp -R $templates $site/envnix/templates
    $B chmod -R u+w $site/envnix/templates

    # uv's wheel brings an ELF for /lib64's loader: run it with the toolchain's instead, from
    # the bin/ that uv's find_uv_bin looks in next to site-packages. uv pip compile wants an
    # interpreter matching --python-version on PATH even for another platform: the pinned
    # one, in a directory of its own put first on uv's PATH only.
    $B mkdir $out/libexec/uv-python
    $B cat > $out/libexec/uv-python/python3.11 <<EOF
    #!$B sh
    exec ${loader} --library-path ${libs} ${python} "\$@"
    EOF
    for exe in uv uvx; do
      $B mv $out/bin/$exe $out/libexec/$exe
      $B cat > $out/bin/$exe <<EOF
    #!$B sh
    PATH=$out/libexec/uv-python:\$PATH
    export PATH
    exec ${loader} --library-path ${libs} $out/libexec/$exe "\$@"
    EOF
    done

    # The host programs envnix looks up on PATH, run through the loader: a directory of their
    # own that bin/envnix puts first on its PATH (the host's programs, nix, stay after it).
    # The CA bundle as update-ca-certificates writes it for Debian's default configuration:
    # every shipped certificate, in path order; alone in its directory, which bin/envnix
    # makes SSL_CERT_DIR (Go's skopeo reads every file there) so that, unless the user names
    # other CAs, the host's /etc/ssl/certs is not read either.
    $B mkdir -p $out/libexec/tools $out/share/ssl/certs
    for exe in $programs; do
      $B cat > $out/libexec/tools/$exe <<EOF
    #!$B sh
    exec ${loader} --library-path ${toolLibs} ${toolsTree}/usr/bin/$exe "\$@"
    EOF
    done
    $B chmod 555 $out/libexec/tools/*
    for crt in $toolsData/usr/share/ca-certificates/*/*.crt; do
      $B cat $crt >> $out/share/ssl/certs/ca-certificates.crt
    done

    $B cat > $out/libexec/envnix.py <<EOF
    """envnix's entry point on the pinned python: its site-packages first, then the CLI."""
    import sys
    sys.path.insert(0, "$site")
    sys.argv[0] = "envnix"
    from envnix.cli import main
    main()
    EOF
    $B cat > $out/bin/envnix <<EOF
    #!$B sh
    PATH=$out/libexec/tools:\$PATH
    : \''${SSL_CERT_FILE:=$out/share/ssl/certs/ca-certificates.crt} \''${SSL_CERT_DIR:=$out/share/ssl/certs}
    : \''${ENVNIX_DEBIAN_KEYRING:=${keyring}}
    export PATH SSL_CERT_FILE SSL_CERT_DIR ENVNIX_DEBIAN_KEYRING
    exec ${loader} --library-path ${libs} ${python} -E -s -X pycache_prefix=$out/pycache $out/libexec/envnix.py "\$@"
    EOF
    $B chmod 555 $out/bin/* $out/libexec/uv-python/python3.11

    # Pycs, read as they are and never written (the store is read-only): envnix's and the
    # wheels' compiled here, the stdlib's from the toolchain's pycache (same prefix layout).
    $B mkdir -p $out/pycache${builtins.dirOf tc}
    $B ln -s ${pinned.tcPycache}${tc} $out/pycache${tc}
    ${loader} --library-path ${libs} ${python} -E -s -X pycache_prefix=$out/pycache \
      -m compileall -q -j 1 --invalidation-mode unchecked-hash $site $out/libexec
  '' ];
}
