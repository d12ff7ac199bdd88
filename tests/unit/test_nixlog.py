"""Nix's internal-json log read back (core/nixlog.py): the plain lines nix-build would have
printed, and the download bytes and derivation counts only the JSON carries. The events are
Nix 2.8's own, captured from a build that fetched a 3 MB file with builtin:fetchurl."""

from __future__ import annotations

from envnix.core.nixlog import JsonLog

DRV = "/nix/store/s2l9sbcfpsi63hhjpwb03fvriixvik36-blob.bin.drv"
EVENTS = [
    '@nix {"action":"msg","level":3,"msg":"this derivation will be built:"}',
    f'@nix {{"action":"msg","level":3,"msg":"  {DRV}"}}',
    '@nix {"action":"start","id":7,"level":0,"text":"","type":104}',
    '@nix {"action":"result","fields":[0,1,0,0],"id":7,"type":105}',
    f'@nix {{"action":"start","fields":["{DRV}","",1,1],"id":9,"level":3,'
    f'"text":"building \'{DRV}\'","type":105}}',
    '@nix {"action":"start","fields":["http://127.0.0.1:18777/blob.bin"],"id":10,"level":4,'
    '"text":"downloading \'http://127.0.0.1:18777/blob.bin\'","type":101}',
    '@nix {"action":"result","fields":[65536,3000000,0,0],"id":10,"type":105}',
    '@nix {"action":"result","fields":["envnix-builder: layer: boom"],"id":9,"type":101}',
    '@nix {"action":"stop","id":10}',
    '@nix {"action":"result","fields":[1,1,0,0],"id":7,"type":105}',
    '@nix {"action":"msg","level":0,"msg":"\\u001b[31;1merror:\\u001b[0m hash mismatch in '
    'fixed-output derivation \'\\u001b[35;1m/nix/store/x.drv\\u001b[0m\':"}',
    "a line that is not Nix's JSON",
]


def test_plain_lines_and_progress_from_the_json_log() -> None:
    got: list[tuple[str, int, int]] = []
    builds: list[tuple[int, int]] = []
    log = JsonLog(lambda url, done, size: got.append((url, done, size)),
                  lambda done, wanted: builds.append((done, wanted)))
    lines = [text for event in EVENTS for text in log.feed(event + "\n")]
    assert lines == [
        "this derivation will be built:\n",
        f"  {DRV}\n",
        f"building '{DRV}'...\n",
        "envnix-builder: layer: boom\n",
        "error: hash mismatch in fixed-output derivation '/nix/store/x.drv':\n",
        "a line that is not Nix's JSON\n",
    ]
    assert log.text == "".join(lines)
    assert got == [("http://127.0.0.1:18777/blob.bin", 65536, 3000000)]
    assert builds == [(0, 1), (1, 1)]
