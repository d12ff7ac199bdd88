{
  # An OCI image from build.envd, locked by envnix (envnix.lock) and built by Nix alone:
  #   nix run .#envnix -- lock        after editing build.envd (or: envnix lock)
  #   git add build.envd envnix.lock  a flake sees only the files git knows
  #   nix build .#image               ./result/oci is the image, on any machine with Nix
  #   nix run .#image.copyTo -- docker://REGISTRY/NAME:TAG
  #   nix flake check                 fails when envnix.lock is older than build.envd
  description = "An image built by envnix from build.envd";

  # Where envnix comes from: any flake reference. "envnix" is looked up in the flake
  # registry (nix registry add envnix <flake-ref>); or write the reference here.
  inputs.envnix.url = "envnix";

  outputs = { self, envnix }:
    let
      image = envnix.lib.buildImage { context = ./.; };
    in
    {
      packages.x86_64-linux = {
        inherit image;
        default = image;
      };
      apps.x86_64-linux.envnix = envnix.apps.x86_64-linux.default;
      checks.x86_64-linux.envnix-lock = image.lockCheck;
    };
}
