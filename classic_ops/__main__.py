"""classic-ops (also python -m classic_ops): info, demo, train, summary, bench."""
import argparse

import torch

MODELS = ["lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34",
          "resnet50", "googlenet", "mobilenet_v1", "mobilenet_v2"]


def main(argv=None):
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark suite parses its own flags
        from . import bench

        return bench.main(argv[1:])
    parser = argparse.ArgumentParser(prog="classic-ops", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("info", help="what this build holds")
    demo = commands.add_parser("demo", help="every op against native torch: max error and time")
    demo.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train = commands.add_parser("train", help="train LeNet-5 on scikit-learn's handwritten digits")
    train.add_argument("model", choices=["lenet5"])
    train.add_argument("--epochs", type=int, default=15)
    train.add_argument("--compare", action="store_true", help="also train with native torch layers")
    train.add_argument("--checkpoint", default="checkpoints/lenet5_digits.pt")
    train.add_argument("--device", default=None)
    summary = commands.add_parser("summary", help="per-layer shapes, parameters and MACs of a network")
    summary.add_argument("model", choices=MODELS)
    summary.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    commands.add_parser("bench", help="kernel microbenchmarks against native ops (see classic-ops bench -h)")
    args = parser.parse_args(argv)

    import classic_ops

    print(classic_ops.build_info())
    if args.command in (None, "demo"):
        from . import demo as demo_module

        demo_module.run(device=getattr(args, "device", "cpu"))
    elif args.command == "train":
        from . import train as train_module

        train_module.main(epochs=args.epochs, compare=args.compare, checkpoint=args.checkpoint,
                          device=args.device)
    elif args.command == "summary":
        model = getattr(classic_ops.models, args.model)()
        size = args.input_size or ((1, 32, 32) if args.model == "lenet5" else (3, 224, 224))
        classic_ops.summary(model, tuple(size))


if __name__ == "__main__":
    main()
