{
  # envnix as a flake, without nixpkgs: everything is built from pinned public artifacts.
  #   nix run <this flake> -- lock          envnix itself (nix/envnix.nix)
  #   envnix.lib.buildImage { context = ./.; }   an image from build.envd + envnix.lock, in
  #                                          pure Nix (templates/image.nix), as envnix build
  #   nix flake init -t <this flake>         flake.nix + build.envd + .gitignore for a repo
  description = "envnix: bit-reproducible OCI images with Nix from envd build.envd files";

  outputs = { self }:
    let
      system = "x86_64-linux";
      envnix = import ./nix/envnix.nix;
      inherit (import ./envnix/toolchain/toolchain.nix {
        pin = builtins.fromJSON (builtins.readFile ./envnix/toolchain/bookworm-amd64.json);
      }) busybox;

      # The image of `context` (build.envd + envnix.lock there): the OCI layout as a
      # derivation, with what nix2container users look for beside it.
      #   context       the build context (./. in a flake: the repository's files)
      #   lock          default context + "/envnix.lock"
      #   tag           name:tag recorded in the layout; default <context name>:dev
      #   toolchain     "pinned" (default), "nixpkgs" (with pkgs) or "host"
      #   pkgs          a nixpkgs package set, for the nixpkgs toolchain or CUDA from nixpkgs
      #   checkSources  false to build from a lock older than build.envd (not recommended)
      #   platform      "linux/arm64": that platform's image of a lock made with --platform
      #                 (default: the lock's first); `.index` joins every platform's image
      buildImage = args:
        let
          built = import ./templates/image.nix ({
            builders = ./envnix/builders;
            toolchainNix = ./envnix/toolchain/toolchain.nix;
            shippedPin = ./envnix/toolchain/bookworm-amd64.json;
          } // args);
        in
        built.image // {
          inherit (built) archive layers lockCheck index images;
          # nix run .#image.copyTo -- docker://REGISTRY/NAME:TAG [skopeo copy flags]
          copyTo = copyTo built.image;
        };

      # A program that pushes an image's OCI layout with envnix's pinned skopeo; its
      # arguments go to `skopeo copy` after the source (destination, --dest-creds, ...).
      copyTo = image: derivation {
        name = "copy-to";
        inherit system;
        builder = busybox;
        PATH = "/path-not-set";
        args = [ "sh" "-ec" ''
          B=${busybox}
          $B mkdir -p $out/bin
          $B cat > $out/bin/copy-to <<EOF
          #!$B sh
          : \''${SSL_CERT_FILE:=${envnix}/share/ssl/certs/ca-certificates.crt} \''${SSL_CERT_DIR:=${envnix}/share/ssl/certs}
          export SSL_CERT_FILE SSL_CERT_DIR
          exec ${envnix}/libexec/tools/skopeo --insecure-policy copy oci:${image}/oci "\$@"
          EOF
          $B chmod 555 $out/bin/copy-to
        '' ];
      };

      quickstart = buildImage { context = ./examples/quickstart; tag = "quickstart:dev"; };
    in
    {
      lib = { inherit buildImage; };

      packages.${system} = {
        default = envnix;
        inherit envnix quickstart;
      };
      apps.${system}.default = {
        type = "app";
        program = "${envnix}/bin/envnix";
      };
      checks.${system}.quickstart-lock = quickstart.lockCheck;

      templates.default = {
        path = ./templates/flake;
        description = "An image from build.envd, locked by envnix and built by Nix";
      };
    };
}
